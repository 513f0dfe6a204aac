"""The statistics API (/api/v1/stats) over rollups built from known readings: figures,
pagination by cursor, validation, CSV export and the OpenAPI description."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb

from ioc.config import Settings
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.rollups.config import RollupSettings
from ioc.rollups.levels import HOUR, floor, local_day
from ioc.rollups.maintain import Maintainer
from tests.conftest import api_client, drop_database, own_database, sign_in
from tests.integration.test_rollup_maintain import reading

pytestmark = pytest.mark.integration
VN = "Asia/Ho_Chi_Minh"
M = timedelta(minutes=1)


@dataclass
class World:
    settings: Settings
    h: datetime  # readings fill this hour (3 hours ago) and the next
    now: datetime


@pytest.fixture(scope="module")
async def world(services: Settings) -> AsyncIterator[World]:
    settings, name = await own_database(services, "ioc_stats_api")
    conn = await connect(settings.dsn, autocommit=True)
    try:
        await seed(conn, load_geography(settings.areas_file), sensors=0, seed_value=1)
        now = (await (await conn.execute("SELECT now() AS t")).fetchone())["t"]  # type: ignore[index]
        h = floor(now, HOUR.width) - 3 * HOUR.width
        for dev, kind, area in [
            ("s1", "traffic_sensor", "dong-xoai"),
            ("s2", "traffic_sensor", "binh-long"),
            ("c1", "camera", "dong-xoai"),
        ]:
            await conn.execute(
                "INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata, created_at)"
                " VALUES (%s, %s, %s, %s, 11.5, 106.9, %s, %s)",
                (dev, kind, dev, area, Jsonb({"free_flow_kmh": 50}), h - HOUR.width),
            )
        for m in range(120):  # a reading a minute for two hours: 10 vehicles each
            await reading(conn, "s1", h + m * M, 20 + m % 10, 10, 0.3, m)
            if m % 2 == 0:
                await reading(conn, "s2", h + m * M, 40, 10, 0.1, m)
        await conn.execute(
            "INSERT INTO camera_health (time, device_id, connected, fps, status)"
            " VALUES (%s, 'c1', true, 20, 'ok')",
            (h,),
        )
        await Maintainer(RollupSettings(lag_seconds=0)).catch_up(conn)
        yield World(settings, h, now)
    finally:
        await conn.close()
        await drop_database(services, name)


@pytest.fixture(scope="module")
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(world.settings) as c:
        await sign_in(c, world.settings.dsn)
        yield c


def iso(t: datetime) -> str:
    return t.isoformat()


async def get(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    r = await client.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def test_leader_summary_reads_the_same_rollups(
    client: httpx.AsyncClient, world: World
) -> None:
    """The leaders' summary is served from these rollups (every figure: test_summary_api.py)."""
    s = await get(client, "/api/v1/summary/leader")
    assert s["timezone"] == VN and s["scope"]["id"] == "VN-58"
    assert len(s["areas"]) == 11 and len(s["trend"]) == 96
    kpi = s["kpis"]["vehicles_today"]
    assert set(kpi) == {"value", "last_week", "change", "change_pct"}
    assert kpi["last_week"] is None and kpi["change_pct"] is None  # nothing read a week ago
    day_start = datetime.fromisoformat(s["day_start"])
    if world.h >= day_start:  # the readings fall on today (local): 180 readings × 10
        assert kpi["value"] == 1800
    assert sum(p["vehicles"] for p in s["trend"]) <= 1800
    assert all(p["last_week_vehicles"] == 0 for p in s["trend"])


async def test_area_traffic_pages_add_up_to_the_whole_range(
    client: httpx.AsyncClient, world: World
) -> None:
    url = "/api/v1/stats/areas/VN-58/traffic"
    rng = {"start": iso(world.h), "end": iso(world.h + 2 * HOUR.width), "step": "15m"}
    whole = await get(client, url, **rng, limit=1000)
    assert whole["next_cursor"] is None and len(whole["items"]) == 8
    assert whole["totals"]["vehicles"]["value"] == 1800
    assert whole["totals"]["vehicles"]["last_week"] == 0
    first = whole["items"][0]
    # s1: 15 readings at 20..29 km/h; s2: 8 readings at 40.
    assert (first["readings"], first["vehicles"], first["sensors"]) == (23, 230, 2)
    assert first["speed_p50_kmh"] is not None and first["congestion_pct"] == 50.0
    pages, cursor = [], None
    while True:
        page = await get(client, url, **rng, limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p["items"]) for p in pages] == [3, 3, 2]
    assert [i for p in pages for i in p["items"]] == whole["items"]
    assert all(p["totals"] == whole["totals"] for p in pages)


async def test_area_traffic_is_validated(client: httpx.AsyncClient, world: World) -> None:
    url = "/api/v1/stats/areas/VN-58/traffic"
    h = world.h
    bad = [
        ({"start": "2026-11-25T10:00:00", "end": iso(h)}, 422),  # no UTC offset
        ({"start": iso(h), "end": iso(h - HOUR.width)}, 422),  # backwards
        ({"start": iso(h - timedelta(days=3)), "end": iso(h), "step": "1m"}, 422),  # too long
        ({"start": iso(h), "end": iso(h + HOUR.width), "step": "5m"}, 422),  # no such step
        ({"start": iso(h), "end": iso(h + HOUR.width), "limit": 0}, 422),
        ({"start": iso(h), "end": iso(h + HOUR.width), "cursor": "yesterday"}, 422),
        ({"start": iso(h), "end": iso(h + HOUR.width), "cursor": iso(h - HOUR.width)}, 422),
    ]
    for params, code in bad:
        r = await client.get(url, params=params)
        assert r.status_code == code, (params, r.text)
    r = await client.get(
        "/api/v1/stats/areas/nowhere/traffic", params={"start": iso(h), "end": iso(h + M)}
    )
    assert r.status_code == 404


async def test_area_traffic_by_local_day_and_csv(client: httpx.AsyncClient, world: World) -> None:
    day = await get(
        client,
        "/api/v1/stats/areas/dong-xoai/traffic",
        start=iso(world.h),
        end=iso(world.h + 2 * HOUR.width),
        step="1d",
    )
    start = datetime.fromisoformat(day["start"])
    assert start.utcoffset() == timedelta(0) and (start.hour, start.minute) == (17, 0)  # 0:00 +7
    assert sum(i["vehicles"] for i in day["items"]) == 1200  # s1 only: 120 readings × 10
    r = await client.get(
        "/api/v1/stats/areas/VN-58/traffic.csv",
        params={"start": iso(world.h), "end": iso(world.h + 2 * HOUR.width), "step": "1h"},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [int(x["vehicles"]) for x in rows] == [900, 900]


async def test_device_series(client: httpx.AsyncClient, world: World) -> None:
    s = await get(
        client,
        "/api/v1/stats/devices/s1/traffic",
        start=iso(world.h),
        end=iso(world.h + 2 * HOUR.width),
        step="1h",
    )
    assert [i["readings"] for i in s["items"]] == [60, 60]
    assert s["items"][0]["speed_kmh"] == 24.5 and s["items"][0]["speed_p50_kmh"] == 24.5
    assert s["items"][0]["sensors"] is None
    one = await get(
        client, "/api/v1/stats/devices/s1/traffic", start=iso(world.h), end=iso(world.h + M),
        step="1m",
    )  # fmt: skip
    assert one["items"][0]["readings"] == 1 and one["items"][0]["speed_p50_kmh"] is None
    r = await client.get(
        "/api/v1/stats/devices/c1/traffic", params={"start": iso(world.h), "end": iso(world.h + M)}
    )
    assert r.status_code == 422 and "camera" in r.text
    r = await client.get(
        "/api/v1/stats/devices/zz/traffic", params={"start": iso(world.h), "end": iso(world.h + M)}
    )
    assert r.status_code == 404


async def test_availability_report_pages_and_csv(client: httpx.AsyncClient, world: World) -> None:
    d = local_day(world.h, VN)
    params = {"first_day": (d - timedelta(days=1)).isoformat(), "last_day": d.isoformat()}
    whole = await get(
        client, "/api/v1/stats/availability", **params, area_id=["VN-58", "dong-xoai"]
    )
    today = [r for r in whole["items"] if r["day"] == d.isoformat()]
    assert {(r["area_id"], r["kind"]) for r in today} == {
        ("VN-58", "traffic_sensor"),
        ("VN-58", "camera"),
        ("dong-xoai", "traffic_sensor"),
        ("dong-xoai", "camera"),
    }
    cams = next(r for r in today if (r["area_id"], r["kind"]) == ("dong-xoai", "camera"))
    assert cams["slots_up"] == 1 and cams["last_week_pct"] is None
    paged = await get(client, "/api/v1/stats/availability", **params, limit=1)
    assert paged["next_cursor"] == d.isoformat() or paged["next_cursor"] is None
    r = await client.get("/api/v1/stats/availability.csv", params=params)
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    default = await get(client, "/api/v1/stats/availability", **params)
    assert len(rows) == len(default["items"]) and rows[0].keys() >= {"day", "available_pct"}
    for bad in (
        {"first_day": d.isoformat(), "last_day": (d - timedelta(days=1)).isoformat()},
        {"first_day": "2024-01-01", "last_day": "2026-01-01"},
        {**params, "kind": "site"},
        {**params, "cursor": "soon"},
    ):
        assert (await client.get("/api/v1/stats/availability", params=bad)).status_code == 422
    r = await client.get("/api/v1/stats/availability", params={**params, "area_id": "nowhere"})
    assert r.status_code == 404


async def test_openapi_describes_the_statistics(client: httpx.AsyncClient) -> None:
    doc = await get(client, "/openapi.json")
    paths = doc["paths"]
    for p in (
        "/api/v1/stats/areas/{area_id}/traffic",
        "/api/v1/stats/areas/{area_id}/traffic.csv",
        "/api/v1/stats/devices/{device_id}/traffic",
        "/api/v1/stats/availability",
        "/api/v1/stats/availability.csv",
    ):
        assert p in paths, p
    schemas = doc["components"]["schemas"]
    assert {"AreaTrafficPage", "KpiOut", "AvailabilityPage"} <= schemas.keys()
    # One leaders' summary: /api/v1/summary/leader (test_summary_api.py), from the rollups.
    assert "/api/v1/stats/leader" not in paths and "LeaderStats" not in schemas
    step = next(
        q for q in paths["/api/v1/stats/areas/{area_id}/traffic"]["get"]["parameters"]
        if q["name"] == "step"
    )  # fmt: skip
    assert step["schema"]["enum"] == ["1m", "15m", "1h", "1d"]
