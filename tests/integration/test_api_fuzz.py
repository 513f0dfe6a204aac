"""Fuzzing the API against its own OpenAPI schema (Schemathesis), signed in as each role: no
request may get a 5xx, and no response may break the schema its route declares (body and content
type). Every operation runs with valid and with invalid input; sign-out is left out (it would end
the session the other cases use). A real websocket is fed garbage and must still answer a ping
(the parser's own properties: tests/unit/test_ws_protocol.py).

The database is the test's own, seeded with the demo geography and a little of everything
(readings, rollups, cameras, alerts, maintenance windows), so requests reach real rows: about
half of the valid cases use ids and ranges that exist. Generation is seeded, so a failure
reproduces on the next run; the summary line gives the counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from ioc.api.ws import MAX_BAD_MESSAGES
from ioc.bench.common import ensure_user
from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db.cameras import seed_cameras, upsert_thumbnail
from ioc.db.connect import connect
from ioc.db.observations import write_batch
from ioc.db.seed import load_geography
from ioc.db.seed import seed as seed_geography
from ioc.domain.wire import TrafficObservation
from ioc.rollups.config import RollupSettings
from ioc.rollups.worker import RollupWorker
from tests.conftest import api_server, drop_database, own_database

pytestmark = pytest.mark.integration

# A longer or different run: IOC_FUZZ_SEED=7 IOC_FUZZ_SCALE=10 pytest tests/integration/test_api_fuzz.py
SEED = int(os.environ.get("IOC_FUZZ_SEED", "58"))
SCALE = int(os.environ.get("IOC_FUZZ_SCALE", "1"))
POSITIVE_EXAMPLES = 12 * SCALE  # per operation and role: valid requests as the schema has them
NEGATIVE_EXAMPLES = 6 * SCALE  # per operation and role: requests that break it (expect 4xx)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
HOME = "dong-xoai"
# Routes for anyone (signing in is slow on purpose: argon2), fuzzed once without a token.
PUBLIC = {"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/health"}
# One user per role; half see the whole province, half one district.
USERS = {"admin": "VN-58", "supervisor": HOME, "operator": "VN-58", "leader": HOME}


@dataclass
class World:
    settings: Settings
    ids: dict[str, list[Any]]  # path parameter -> ids that exist
    query: list[dict[str, str]]  # realistic query values for the statistics routes


@dataclass
class Tally:
    operations: int = 0  # in the schema
    cases: int = 0
    failing_cases: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)  # one example per distinct problem

    def fail(self, key: str, detail: str) -> None:
        self.failing_cases += 1
        self.failures.setdefault(key, detail)


@pytest.fixture(scope="module")
async def world(services: Settings) -> AsyncIterator[World]:
    own, name = await own_database(services, "ioc_fuzz")
    conn = await connect(own.dsn, autocommit=True)
    try:
        geo = load_geography(own.areas_file)
        await seed_geography(conn, geo, sensors=20, seed_value=SEED)
        cameras = await seed_cameras(conn, geo, 4, SEED, "rtsp://127.0.0.1:8554")
        now = datetime.now(UTC).replace(microsecond=0)
        cur = await conn.execute(
            "SELECT id, area_id FROM devices WHERE kind = 'traffic_sensor' ORDER BY id"
        )
        sensors = await cur.fetchall()
        readings = [
            TrafficObservation(
                device_id=s["id"],
                seq=k,
                observed_at=now - timedelta(minutes=5 * (36 - k)),
                intensity=10 + i + k % 7,
                average_speed=8.0 if i % 5 == 0 else 45.0 + k % 9,
                occupancy=0.2,
                interval_s=300,
            )
            for i, s in enumerate(sensors)
            for k in range(36)
        ]
        async with conn.transaction():
            await write_batch(conn, readings, [])
        for i, cam in enumerate(cameras):
            await upsert_thumbnail(conn, cam, b"\xff\xd8\xff\xd9", now, 1, 1)
            await conn.execute(
                "INSERT INTO camera_health (time, device_id, connected, fps, status) "
                "SELECT now() - g * interval '1 minute', %s, true, 12.5, %s "
                "FROM generate_series(1, 30) g",
                (cam, "ok" if i % 2 else "frozen"),
            )
        # Alerts on sensors of the district users' own area and of others, in every state.
        sensors.sort(key=lambda r: (r["area_id"] != HOME, r["id"]))
        alert_ids = []
        for i, (rule, s) in enumerate(
            (rule, s)
            for rule in ("traffic.congestion", "traffic.slow_vs_usual")
            for s in sensors[:4]
        ):
            async with conn.transaction():
                row = await alerts_db.open_alert(
                    conn,
                    rule_id=rule,
                    device_id=s["id"],
                    severity=("critical", "major", "minor", "info")[i % 4],
                    title="Ùn tắc giao thông",
                    title_en="Traffic congestion",
                    value=8.0,
                    status=("firing", "pending", "acknowledged")[i % 3],
                )
            assert row is not None
            alert_ids.append(int(row["id"]))
        windows = []
        for target, col in (
            (HOME, "area_id"),
            ("binh-long", "area_id"),
            (sensors[0]["id"], "device_id"),
        ):
            cur = await conn.execute(
                f"INSERT INTO maintenance ({col}, starts_at, ends_at, reason, created_by) "
                "VALUES (%s, now() - interval '1 hour', now() + interval '2 hours', 'fuzz',"
                " 'test') RETURNING id",
                (target,),
            )
            windows.append(int((await cur.fetchone())["id"]))
        await RollupWorker(dsn=own.dsn, settings=RollupSettings()).once()  # the statistics
        for role, area in USERS.items():
            await ensure_user(own.dsn, f"fuzz-{role}", role=role, area=area)
        today = now.date()
        six_hours = {"start": (now - timedelta(hours=6)).isoformat(), "end": now.isoformat()}
        slot = now.replace(second=0) - timedelta(minutes=now.minute % 5)
        minutes = {  # whole minutes, but not whole 5-minute availability slots
            "start": (slot - timedelta(hours=6, minutes=-3)).isoformat(),
            "end": (slot - timedelta(minutes=1)).isoformat(),
            "step": "1m",
        }
        query = [
            six_hours,
            minutes,
            {"first_day": (today - timedelta(days=1)).isoformat(), "last_day": today.isoformat()},
        ]
        ids = {
            "alert_id": alert_ids,
            "maintenance_id": windows,
            "device_id": [s["id"] for s in sensors[:3]] + cameras[:2] + [f"site-{HOME}"],
            "area_id": [HOME, "VN-58", "binh-long"],  # the first: seen by every user
        }
        yield World(own, ids, query)
    finally:
        await conn.close()
        await drop_database(services, name)


@pytest.fixture(scope="module")
async def api(world: World) -> AsyncIterator[str]:
    async with api_server(world.settings) as where:
        yield where


@pytest.fixture(scope="module")
async def tokens(api: str) -> dict[str, str]:
    out = {}
    async with httpx.AsyncClient(base_url=f"http://{api}") as http:
        for role in USERS:
            user = f"fuzz-{role}"
            r = await http.post(
                "/api/v1/auth/login",
                json={"username": user, "password": f"{user}-bench-password"},
            )
            assert r.status_code == 200, r.text
            out[role] = r.json()["access_token"]
    return out


def _strategies(op: Any, world: World, mode: GenerationMode) -> Any:
    """The operation's cases; for a positive run half of them with ids and ranges that exist."""
    plain = op.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE:
        return plain
    names = {p.name for p in op.path_parameters}
    queries = {p.name for p in op.query}
    known = [op.as_strategy(path_parameters={n: v}) for n in names for v in world.ids.get(n, ())]
    known += [
        op.as_strategy(
            path_parameters={n: world.ids[n][0] for n in names if n in world.ids} or None,
            query=q,
        )
        for q in world.query
        if set(q) <= queries
    ]
    return st.one_of(plain, st.one_of(known)) if known else plain


def _runner(strategy: Any, examples: int, tally: Tally, call: dict[str, Any], role: str) -> Any:
    """One operation in one mode as one role: a seeded Hypothesis run of ``examples`` cases."""

    @seed(SEED)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # failures are counted, not shrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        tally.cases += 1
        tally.per_operation[case.operation.label] += 1
        call["session"].cookies.clear()  # bearer only: no cookie a response set
        try:
            response = case.call(**call, timeout=30)
            case.validate_response(response, checks=CHECKS, headers=call["headers"])
        except FailureGroup as e:
            for f in e.exceptions:
                tally.fail(f"{case.operation.label} as {role}: {f.title}", str(e)[:1500])
        except requests.RequestException as e:
            tally.fail(f"{case.operation.label} as {role}: {type(e).__name__}", str(e))

    return run


def fuzz(base_url: str, world: World, tokens: dict[str, str]) -> Tally:
    """Run every operation as every role, positive and negative; count cases and failures."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(
        path="/api/v1/auth/logout"  # it would end the session the other cases run under
    )
    tally = Tally()
    session = requests.Session()
    for role, token in {"anonymous": "", **tokens}.items():
        call = {
            "base_url": base_url,
            "session": session,
            "headers": {"Authorization": f"Bearer {token}"} if token else {},
        }
        for result in schema.get_all_operations():
            op = result.ok()
            tally.operations += role == "anonymous"
            if (op.path in PUBLIC) != (role == "anonymous"):
                continue  # public routes once, without a token; the others as each role
            for mode, examples in (
                (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
                (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
            ):
                try:
                    _runner(_strategies(op, world, mode), examples, tally, call, role)()
                except Unsatisfiable:  # nothing to break: the operation takes no input
                    assert mode is GenerationMode.NEGATIVE, op.label
    return tally


GARBAGE: list[tuple[str | bytes, str]] = [
    ("{", "bad_json"),
    ("NaN", "bad_json"),
    ("\x00", "bad_json"),
    (b"\xff\xfe not text", "bad_json"),  # a binary frame, not even UTF-8
    ("[1, 2]", "not_an_object"),
    ('"ping"', "not_an_object"),
    ('{"type": "subscribe"}', "unknown_type"),
    ('{"echo": 1}', "unknown_type"),
    ("x" * 100_000, "too_large"),
    ("[" * 2000 + "]" * 2000, "too_large"),
    ('{"type": "ping", "echo": ' + "[" * 40 + "]" * 40 + "}", "too_large"),
]


async def answer(ws: Any) -> dict[str, Any]:
    """The next reply to a client message (snapshot, heartbeats and events skipped)."""
    async with asyncio.timeout(10):
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] in ("pong", "error"):
                return dict(msg)


async def test_websocket_survives_garbage_and_still_answers_a_ping(
    api: str, tokens: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {tokens['leader']}"}
    async with ws_connect(f"ws://{api}/api/v1/stream", additional_headers=auth) as ws:
        for frame, code in GARBAGE:
            await ws.send(frame)
            got = await answer(ws)
            assert got == {"type": "error", "code": code, "message": got["message"]}, frame[:40]
        echo = {"n": 1, "text": "Đồng Xoài \U0001f697", "list": [None, True, 1.5]}
        await ws.send(json.dumps({"type": "ping", "echo": echo}, ensure_ascii=False))
        assert await answer(ws) == {"type": "pong", "echo": echo}
        # Only a client that sends nothing else is closed.
        for _ in range(MAX_BAD_MESSAGES):
            await ws.send("garbage")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
    assert ws.close_code == 4400 and ws.close_reason == "too many bad messages"


async def test_schemathesis_every_operation_as_every_role(
    world: World, api: str, tokens: dict[str, str]
) -> None:
    t0 = time.monotonic()
    tally = await asyncio.to_thread(fuzz, f"http://{api}", world, tokens)
    took = time.monotonic() - t0
    print(
        f"\nschemathesis: {tally.cases} cases, {tally.failing_cases} failures"
        f" ({len(tally.per_operation)} operations, {len(tokens)} roles, seed {SEED}, {took:.0f} s)"
    )
    for key, detail in tally.failures.items():
        print(f"--- {key}\n{detail}")
    assert len(tally.per_operation) == tally.operations > 30, "an operation was never run"
    assert not tally.failures, "\n".join(tally.failures)
