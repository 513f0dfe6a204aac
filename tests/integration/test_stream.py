"""The live stream end to end: real API (uvicorn), real database, real websocket clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect as ws_connect

from ioc.bench.common import bearer, bench_token
from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db.connect import connect
from streams.hub import EventHub, Filter
from streams.session import serve
from tests.conftest import api_server

pytestmark = pytest.mark.integration


@pytest.fixture
async def auth(services: Settings, api: str) -> dict[str, str]:
    return bearer(await bench_token(services, f"http://{api}"))


@pytest.fixture
async def api(services: Settings) -> AsyncIterator[str]:
    async with api_server(services) as where:
        yield where


async def make_alert(settings: Settings, device: str, rule: str) -> list[int]:
    """Open, fire and resolve one alert; returns the event ids written."""
    conn = await connect(settings.dsn, autocommit=True)
    ids = []
    try:
        async with conn.transaction():
            row = await alerts_db.open_alert(
                conn,
                rule_id=rule,
                device_id=device,
                severity="major",
                title="t",
                title_en="t",
                value=1.0,
                status="pending",
            )
        assert row is not None
        for expected, to in ((("pending",), "firing"), (("firing",), "resolved")):
            async with conn.transaction():
                assert await alerts_db.transition(conn, row["id"], expected=expected, to=to)
        cur = await conn.execute(
            "SELECT id FROM events WHERE alert_id = %s ORDER BY id", (row["id"],)
        )
        ids = [r["id"] for r in await cur.fetchall()]
    finally:
        await conn.close()
    return ids


async def recv_until(ws: Any, event_id: int, timeout: float = 10) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "event":
                got.append(msg)
                if msg["id"] >= event_id:
                    return got


def sessions(path: str) -> float:
    return REGISTRY.get_sample_value("ioc_stream_sessions_total", {"path": path}) or 0.0


async def test_snapshot_live_events_and_exact_resume(
    services: Settings, api: str, auth: dict[str, str]
) -> None:
    """The first connection has no compression: live events go out as the hub's pre-built
    frames (streams.direct). The resuming one negotiates permessage-deflate (this test server
    keeps uvicorn's default), so its events are framed per client through ASGI. Both paths
    must deliver the same thing."""
    direct, asgi = sessions("direct"), sessions("asgi")
    async with ws_connect(
        f"ws://{api}/api/v1/stream", additional_headers=auth, compression=None
    ) as ws:
        snap = json.loads(await ws.recv())
        assert snap["type"] == "snapshot" and isinstance(snap["watermark"], int)
        assert (sessions("direct"), sessions("asgi")) == (direct + 1, asgi)
        ids = await make_alert(services, "ts-00041", "test.stream-1")
        got = await recv_until(ws, ids[-1])
        mine = [m for m in got if m["alert"]["rule_id"] == "test.stream-1"]
        assert [m["kind"] for m in mine] == ["alert.pending", "alert.firing", "alert.resolved"]
        assert all(m["id"] > snap["watermark"] for m in got)
        last = got[-1]["id"]

    # Offline while three more events happen; resuming gets exactly those, once, in order.
    missed = await make_alert(services, "ts-00042", "test.stream-2")
    async with ws_connect(f"ws://{api}/api/v1/stream?since={last}", additional_headers=auth) as ws:
        later = await make_alert(services, "ts-00043", "test.stream-3")  # live, after resume
        got = await recv_until(ws, later[-1])
        assert ws.protocol.extensions, "this connection was to negotiate permessage-deflate"
        assert sessions("asgi") == asgi + 1
        ids_seen = [m["id"] for m in got]
        assert ids_seen == sorted(set(ids_seen))
        assert set(missed) | set(later) <= set(ids_seen)
        assert all(i > last for i in ids_seen)


async def test_resume_from_unknown_future_id_gets_snapshot(
    services: Settings, api: str, auth: dict[str, str]
) -> None:
    async with ws_connect(
        f"ws://{api}/api/v1/stream?since=999999999", additional_headers=auth
    ) as ws:
        msg = json.loads(await ws.recv())
        assert msg["type"] == "snapshot"


async def test_filter_by_area(services: Settings, api: str, auth: dict[str, str]) -> None:
    conn = await connect(services.dsn, autocommit=True)
    cur = await conn.execute("SELECT id, area_id FROM devices ORDER BY id LIMIT 40")
    devices = await cur.fetchall()
    await conn.close()
    inside = devices[0]
    outside = next(d for d in devices if d["area_id"] != inside["area_id"])
    async with ws_connect(
        f"ws://{api}/api/v1/stream?area={inside['area_id']}", additional_headers=auth
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        skipped = await make_alert(services, outside["id"], "test.filter-out")
        wanted = await make_alert(services, inside["id"], "test.filter-in")
        got = await recv_until(ws, wanted[-1])
        assert not set(skipped) & {m["id"] for m in got}
        assert all(m["area_id"] == inside["area_id"] for m in got)


async def test_slow_client_is_told_to_resync_and_others_are_not_slowed(services: Settings) -> None:
    hub = EventHub(dsn=services.dsn, client_queue_max=2, poll_s=0.2)
    await hub.start()
    try:
        release = asyncio.Event()
        slow_sent: list[dict[str, Any]] = []
        fast_sent: list[dict[str, Any]] = []

        async def slow_send(text: str) -> None:
            msg = json.loads(text)
            slow_sent.append(msg)
            if msg["type"] == "event":
                await release.wait()  # a client that stopped reading

        async def fast_send(text: str) -> None:
            fast_sent.append(json.loads(text))

        slow = asyncio.create_task(serve(hub, slow_send, since=None, flt=Filter()))
        fast = asyncio.create_task(serve(hub, fast_send, since=None, flt=Filter()))
        await asyncio.sleep(0.3)
        ids = []
        for n in range(3):
            ids += await make_alert(services, "ts-00043", f"test.slow-{n}")
        async with asyncio.timeout(10):
            while not any(m.get("id") == ids[-1] for m in fast_sent):
                await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.wait_for(slow, 10) == "resync"
        assert slow_sent[-1] == {"type": "resync", "reason": "client_too_slow"}
        assert hub.resyncs >= 1
        fast_ids = [m["id"] for m in fast_sent if m["type"] == "event"]
        assert fast_ids == sorted(fast_ids) and set(ids) <= set(fast_ids)
        fast.cancel()
    finally:
        await hub.stop()


async def test_rest_endpoints(services: Settings, api: str, auth: dict[str, str]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://{api}", headers=auth) as http:
        areas = (await http.get("/api/v1/areas")).json()
        assert {a["id"] for a in areas} >= {"VN-58", "dong-xoai"}
        devices = (await http.get("/api/v1/devices", params={"area_id": "dong-xoai"})).json()
        parent = {a["id"]: a["parent_id"] for a in areas}

        def under_dong_xoai(area: str | None) -> bool:
            while area is not None and area != "dong-xoai":
                area = parent.get(area)
            return area == "dong-xoai"

        assert devices and all(under_dong_xoai(d["area_id"]) for d in devices)
        assert any(d["area_id"] == "dong-xoai" for d in devices)
        geo = (await http.get("/api/v1/geo/province")).json()
        assert geo["type"] == "FeatureCollection"
        health = (await http.get("/api/v1/health")).json()
        assert health["database"] is True
        missing = await http.post("/api/v1/alerts/999999999/ack", json={"note": "x"})
        assert missing.status_code == 404
        page = await http.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
