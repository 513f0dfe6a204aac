"""The lifecycle against the real database: escalation, maintenance, root-cause suppression and
flapping, each checked through the alerts table and the events (the audit trail)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ioc.alerts.engine import AlertEngine
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.domain.rules import Rule

pytestmark = pytest.mark.integration

SPEED = Rule(
    id="t.speed",
    metric="average_speed",
    op="below",
    threshold=15,
    clear=25,
    severity="major",
    title="Ùn tắc",
    title_en="Congestion",
    window_s=5,
    for_s=0,
)
SILENT = Rule(
    id="t.silent",
    metric="silence_s",
    op="above",
    threshold=60,
    clear=20,
    severity="minor",
    title="Mất tín hiệu",
    title_en="Silent",
    suppress_under_parent=True,
)
SITE = Rule(
    id="t.site",
    metric="children_down_ratio",
    op="above",
    threshold=0.8,
    clear=0.5,
    severity="critical",
    title="Mất kết nối",
    title_en="Site down",
    device_kind="site",
    root_cause=True,
)


@pytest.fixture
async def world(services: Settings) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], str]]:
    """An area of its own with one site and five sensors behind it."""
    tag = uuid.uuid4().hex[:6]
    conn = await connect(services.dsn, autocommit=True)
    area = f"area-{tag}"
    await conn.execute(
        "INSERT INTO areas (id, parent_id, name, name_en, level, lat, lon, depth) "
        "VALUES (%s, 'dong-xoai', 'Phường thử', 'Test ward', 'ward', 11.5, 106.9, 2)",
        (area,),
    )
    await conn.execute(
        "INSERT INTO devices (id, kind, name, area_id, lat, lon) "
        "VALUES (%s, 'site', 'site', %s, 11.5, 106.9)",
        (f"site-{tag}", area),
    )
    for i in range(5):
        await conn.execute(
            "INSERT INTO devices (id, kind, name, area_id, lat, lon, parent_id) "
            "VALUES (%s, 'traffic_sensor', %s, %s, 11.5, 106.9, %s)",
            (f"s{i}-{tag}", f"sensor {i}", area, f"site-{tag}"),
        )
    yield conn, tag
    await conn.close()


async def put(conn: psycopg.AsyncConnection[Any], dev: str, when: datetime, speed: float) -> None:
    await conn.execute(
        "INSERT INTO traffic_observations (time, device_id, seq, intensity, average_speed, "
        "occupancy, interval_s) VALUES (%s, %s, %s, 3, %s, 0.5, 1)",
        (when, dev, int(when.timestamp() * 1000), speed),
    )


async def seen(conn: psycopg.AsyncConnection[Any], dev: str, when: datetime) -> None:
    await conn.execute(
        "INSERT INTO device_state (device_id, last_seen, last) VALUES (%s, %s, '{}') "
        "ON CONFLICT (device_id) DO UPDATE SET last_seen = excluded.last_seen",
        (dev, when),
    )


async def alerts_of(
    conn: psycopg.AsyncConnection[Any], dev: str, rule: str
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, status, severity, escalated, suppressed_by, parent_alert_id FROM alerts "
        "WHERE device_id = %s AND rule_id = %s ORDER BY id",
        (dev, rule),
    )
    return list(await cur.fetchall())


async def kinds(conn: psycopg.AsyncConnection[Any], alert_id: int) -> list[str]:
    cur = await conn.execute("SELECT kind FROM events WHERE alert_id = %s ORDER BY id", (alert_id,))
    return [r["kind"] for r in await cur.fetchall()]


async def test_escalation_raises_severity_once(services: Settings, world) -> None:  # type: ignore[no-untyped-def]
    conn, tag = world
    dev, t0 = f"s0-{tag}", datetime.now(UTC) - timedelta(hours=5)
    engine = AlertEngine(dsn=services.dsn, rules=[replace(SPEED, escalate_after_s=30)])
    await put(conn, dev, t0, 5)
    await engine.tick(conn, now=t0 + timedelta(seconds=1))
    await put(conn, dev, t0 + timedelta(seconds=40), 5)
    await engine.tick(conn, now=t0 + timedelta(seconds=41))
    await put(conn, dev, t0 + timedelta(seconds=80), 5)
    await engine.tick(conn, now=t0 + timedelta(seconds=81))
    (a,) = await alerts_of(conn, dev, SPEED.id)
    assert (a["status"], a["severity"], a["escalated"]) == ("firing", "critical", True)
    assert await kinds(conn, a["id"]) == ["alert.firing", "alert.escalated"]


async def test_maintenance_suppresses_then_releases(services: Settings, world) -> None:  # type: ignore[no-untyped-def]
    conn, tag = world
    dev, t0 = f"s1-{tag}", datetime.now(UTC) - timedelta(hours=6)
    engine = AlertEngine(dsn=services.dsn, rules=[SPEED])
    await put(conn, dev, t0, 5)
    await engine.tick(conn, now=t0 + timedelta(seconds=1))
    await conn.execute(
        "INSERT INTO maintenance (area_id, starts_at, ends_at, reason, created_by) "
        "VALUES (%s, %s, %s, 'road works', 'test')",
        (f"area-{tag}", t0 + timedelta(seconds=5), t0 + timedelta(seconds=60)),
    )
    await put(conn, dev, t0 + timedelta(seconds=9), 5)
    await engine.tick(conn, now=t0 + timedelta(seconds=10))
    (a,) = await alerts_of(conn, dev, SPEED.id)
    assert (a["status"], a["suppressed_by"]) == ("suppressed", "maintenance")
    other = f"s2-{tag}"  # a new breach inside the window opens nothing
    await put(conn, other, t0 + timedelta(seconds=9), 5)
    await engine.tick(conn, now=t0 + timedelta(seconds=10))
    assert await alerts_of(conn, other, SPEED.id) == []
    await put(conn, dev, t0 + timedelta(seconds=69), 5)  # window over, still congested
    await engine.tick(conn, now=t0 + timedelta(seconds=70))
    (a,) = await alerts_of(conn, dev, SPEED.id)
    assert (a["status"], a["suppressed_by"]) == ("firing", None)
    assert await kinds(conn, a["id"]) == ["alert.firing", "alert.suppressed", "alert.firing"]


async def test_site_down_groups_its_devices_under_one_alert(services: Settings, world) -> None:  # type: ignore[no-untyped-def]
    conn, tag = world
    site, now = f"site-{tag}", datetime.now(UTC)
    sensors = [f"s{i}-{tag}" for i in range(5)]
    for s in sensors:
        await seen(conn, s, now - timedelta(minutes=10))  # all five went quiet together
    engine = AlertEngine(dsn=services.dsn, rules=[SILENT, SITE])
    await engine.tick(conn, now=now)
    (root,) = await alerts_of(conn, site, SITE.id)
    assert root["status"] == "firing"
    for s in sensors:
        (child,) = await alerts_of(conn, s, SILENT.id)
        assert child["status"] == "suppressed"
        assert child["parent_alert_id"] == root["id"]
        assert child["suppressed_by"] == f"alert:{root['id']}"
    # The link comes back: the site clears, and so do the children.
    for s in sensors:
        await seen(conn, s, now + timedelta(seconds=59))
    await engine.tick(conn, now=now + timedelta(seconds=60))
    await engine.tick(conn, now=now + timedelta(seconds=61))
    assert [a["status"] for a in await alerts_of(conn, site, SITE.id)] == ["resolved"]
    for s in sensors:
        assert [a["status"] for a in await alerts_of(conn, s, SILENT.id)] == ["resolved"]


async def test_late_children_settle_after_the_site_recovers(services: Settings, world) -> None:  # type: ignore[no-untyped-def]
    """The site clears at 0.5 while two sensors are still reconnecting: they stay grouped for
    settle_s and resolve quietly when they report; one still silent after that fires alone."""
    conn, tag = world
    site, now = f"site-{tag}", datetime.now(UTC)
    sensors = [f"s{i}-{tag}" for i in range(5)]
    for s in sensors:
        await seen(conn, s, now - timedelta(minutes=10))
    silent = replace(SILENT, group_wait_s=10, settle_s=30)
    engine = AlertEngine(dsn=services.dsn, rules=[silent, SITE])
    await engine.tick(conn, now=now)
    await engine.tick(conn, now=now + timedelta(seconds=1))
    for s in sensors[:3]:  # three back: 2/5 down, the site clears
        await seen(conn, s, now + timedelta(seconds=59))
    await engine.tick(conn, now=now + timedelta(seconds=60))
    await engine.tick(conn, now=now + timedelta(seconds=61))
    assert [a["status"] for a in await alerts_of(conn, site, SITE.id)] == ["resolved"]
    late = sensors[3:]
    for s in late:
        assert [a["status"] for a in await alerts_of(conn, s, SILENT.id)] == ["suppressed"]
    await seen(conn, late[0], now + timedelta(seconds=70))  # reconnects within settle_s
    await engine.tick(conn, now=now + timedelta(seconds=71))
    (a,) = await alerts_of(conn, late[0], SILENT.id)
    assert a["status"] == "resolved"
    assert await kinds(conn, a["id"]) == ["alert.suppressed", "alert.resolved"]  # nobody paged
    await engine.tick(conn, now=now + timedelta(seconds=95))  # settle_s over, still silent
    (b,) = await alerts_of(conn, late[1], SILENT.id)
    assert (b["status"], b["parent_alert_id"]) == ("firing", None)


async def test_one_sensor_down_alone_is_not_grouped(services: Settings, world) -> None:  # type: ignore[no-untyped-def]
    conn, tag = world
    now = datetime.now(UTC)
    for i in range(5):
        await seen(conn, f"s{i}-{tag}", now - timedelta(seconds=5))
    await seen(conn, f"s4-{tag}", now - timedelta(minutes=10))
    engine = AlertEngine(dsn=services.dsn, rules=[SILENT, SITE])
    await engine.tick(conn, now=now)
    assert await alerts_of(conn, f"site-{tag}", SITE.id) == []
    (a,) = await alerts_of(conn, f"s4-{tag}", SILENT.id)
    assert (a["status"], a["parent_alert_id"]) == ("firing", None)


async def test_flapping_becomes_one_alert(services: Settings, world) -> None:  # type: ignore[no-untyped-def]
    conn, tag = world
    dev, t0 = f"s3-{tag}", datetime.now(UTC) - timedelta(hours=7)
    engine = AlertEngine(dsn=services.dsn, rules=[replace(SPEED, flap_changes=2)])
    t = 0
    for speed in (5, 40, 5, 40, 5, 40, 5, 40):
        t += 10
        await put(conn, dev, t0 + timedelta(seconds=t), speed)
        await engine.tick(conn, now=t0 + timedelta(seconds=t + 1))
    statuses = [a["status"] for a in await alerts_of(conn, dev, SPEED.id)]
    assert statuses == ["resolved", "resolved", "flapping"]  # not four open/close pairs
    (flapping,) = [a for a in await alerts_of(conn, dev, SPEED.id) if a["status"] == "flapping"]
    assert await kinds(conn, flapping["id"]) == ["alert.flapping"]
