"""The alert engine against the real database: lifecycle, events, and two engines racing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ioc.alerts.engine import AlertEngine
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.domain.rules import Rule

pytestmark = pytest.mark.integration

RULE = Rule(
    id="test.congestion",
    metric="average_speed",
    op="below",
    threshold=15,
    clear=25,
    for_s=5,
    window_s=3,
    severity="major",
    title="Ùn tắc",
    title_en="Congestion",
)


async def put(conn, device: str, seq: int, when: datetime, speed: float) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        """INSERT INTO traffic_observations
           (time, device_id, seq, intensity, average_speed, occupancy, interval_s)
           VALUES (%s, %s, %s, 3, %s, 0.8, 1)""",
        (when, device, seq, speed),
    )


async def events_for(conn, device: str, rule: str) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    cur = await conn.execute(
        """SELECT e.id, e.kind FROM events e JOIN alerts a ON a.id = e.alert_id
           WHERE a.device_id = %s AND a.rule_id = %s ORDER BY e.id""",
        (device, rule),
    )
    return [(r["id"], r["kind"]) for r in await cur.fetchall()]


async def test_lifecycle_pending_firing_resolved(services: Settings) -> None:
    conn = await connect(services.dsn, autocommit=True)
    engine = AlertEngine(dsn=services.dsn, rules=[RULE])
    t0 = datetime.now(UTC) - timedelta(hours=2)
    dev = "ts-00010"
    try:
        await put(conn, dev, 1, t0 - timedelta(seconds=1), 5)
        await engine.tick(conn, now=t0)
        await put(conn, dev, 2, t0 + timedelta(seconds=3), 6)
        await engine.tick(conn, now=t0 + timedelta(seconds=4))  # not long enough
        await put(conn, dev, 3, t0 + timedelta(seconds=5), 7)
        await engine.tick(conn, now=t0 + timedelta(seconds=6))  # fires
        await put(conn, dev, 4, t0 + timedelta(seconds=20), 20)
        await engine.tick(conn, now=t0 + timedelta(seconds=21))  # hysteresis
        await put(conn, dev, 5, t0 + timedelta(seconds=30), 40)
        await engine.tick(conn, now=t0 + timedelta(seconds=31))  # clears
        kinds = await events_for(conn, dev, RULE.id)
        assert [k for _, k in kinds] == ["alert.pending", "alert.firing", "alert.resolved"]
        ids = [i for i, _ in kinds]
        assert ids == sorted(ids)
        cur = await conn.execute(
            "SELECT status, fired_at IS NOT NULL AS fired, resolved_at IS NOT NULL AS resolved "
            "FROM alerts WHERE device_id = %s AND rule_id = %s",
            (dev, RULE.id),
        )
        assert await cur.fetchall() == [{"status": "resolved", "fired": True, "resolved": True}]
    finally:
        await conn.close()


async def test_two_engines_racing_open_one_alert(services: Settings) -> None:
    rule = replace(RULE, id="test.race", for_s=0)
    seed = await connect(services.dsn, autocommit=True)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    devices = [f"ts-{i:05d}" for i in range(20, 40)]
    for n, dev in enumerate(devices):
        await put(seed, dev, 100 + n, t0 - timedelta(seconds=1), 3)
    conns = [await connect(services.dsn, autocommit=True) for _ in range(4)]
    engines = [AlertEngine(dsn=services.dsn, rules=[rule]) for _ in conns]
    try:
        results = await asyncio.gather(
            *(e.tick(c, now=t0) for e, c in zip(engines, conns, strict=True))
        )
        assert sum(results) == len(devices)  # each alert opened exactly once across engines
        cur = await seed.execute(
            "SELECT device_id, count(*) AS n FROM alerts WHERE rule_id = %s GROUP BY device_id",
            (rule.id,),
        )
        rows = await cur.fetchall()
        assert {r["device_id"] for r in rows} == set(devices)
        assert all(r["n"] == 1 for r in rows)
        cur = await seed.execute(
            "SELECT count(*) AS n FROM events e JOIN alerts a ON a.id = e.alert_id "
            "WHERE a.rule_id = %s",
            (rule.id,),
        )
        assert (await cur.fetchone())["n"] == len(devices)  # type: ignore[index]
    finally:
        for c in [seed, *conns]:
            await c.close()


async def test_events_table_is_append_only(services: Settings) -> None:
    import psycopg

    conn = await connect(services.dsn, autocommit=True)
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("DELETE FROM events")
    finally:
        await conn.close()
