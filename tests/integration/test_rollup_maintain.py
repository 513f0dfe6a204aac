"""Rollup maintenance against a real TimescaleDB (a database of its own): hand-computed
buckets, late readings and maintenance changes correcting what was already rolled up, a
transaction still open when a tick runs, readings too late for raw retention, and every
figure of the API read from rollups equal to the same figure computed from raw rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ioc.bench.queries import agree
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.rollups import leader, read
from ioc.rollups.config import RollupSettings
from ioc.rollups.levels import HOUR, SLOT, day_start, floor, local_day
from ioc.rollups.maintain import CAMERA_SETTLE, Maintainer
from ioc.rollups.raw import RawSource
from tests.conftest import drop_database, own_database

pytestmark = pytest.mark.integration
VN = "Asia/Ho_Chi_Minh"
M = timedelta(minutes=1)
Conn = psycopg.AsyncConnection[Any]


@dataclass
class World:
    settings: Settings
    conn: Conn
    h: datetime  # a complete hour, three hours ago: the hour the numbers are about
    now: datetime
    maintainer: Maintainer


async def reading(
    conn: Conn, dev: str, t: datetime, speed: float, n: int, occ: float, seq: int
) -> None:
    await conn.execute(
        "INSERT INTO traffic_observations (time, device_id, seq, intensity, average_speed,"
        " occupancy, interval_s) VALUES (%s, %s, %s, %s, %s, %s, 60)",
        (t, dev, seq, n, speed, occ),
    )


@pytest.fixture(scope="module")
async def world(services: Settings) -> AsyncIterator[World]:
    settings, name = await own_database(services, "ioc_rollup")
    conn = await connect(settings.dsn, autocommit=True)
    try:
        await seed(conn, load_geography(settings.areas_file), sensors=0, seed_value=1)
        now = (await (await conn.execute("SELECT now() AS t")).fetchone())["t"]  # type: ignore[index]
        h = floor(now, HOUR.width) - 3 * HOUR.width
        created = min(h, day_start(now, VN)) - timedelta(hours=2)
        devices = [  # id, kind, area, free-flow km/h
            ("s1", "traffic_sensor", "dong-xoai", 50),
            ("s2", "traffic_sensor", "dong-xoai", 50),
            ("s3", "traffic_sensor", "binh-long", 60),
            ("c1", "camera", "dong-xoai", None),
            ("c2", "camera", "binh-long", None),
        ]
        for dev, kind, area, ff in devices:
            await conn.execute(
                "INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata, created_at)"
                " VALUES (%s, %s, %s, %s, 11.5, 106.9, %s, %s)",
                (dev, kind, dev, area, Jsonb({"free_flow_kmh": ff} if ff else {}), created),
            )
        # One early reading: availability is computed from the oldest raw data on.
        await reading(conn, "s2", created, 40, 1, 0.1, 1)
        for i, (dev, minute, speed, n, occ) in enumerate(
            [
                ("s1", 0, 20, 5, 0.5),
                ("s1", 0.5, 24, 4, 0.6),
                ("s1", 1, 22, 6, 0.4),
                ("s1", 16, 30, 7, 0.3),
                ("s1", 59, 40, 8, 0.2),
                ("s2", 2, 45, 10, 0.1),
                ("s3", 5, 50, 3, 0.05),
                ("s3", 20, 10, 2, 0.9),
            ]
        ):
            await reading(conn, dev, h + minute * M, speed, n, occ, 100 + i)
        for dev, minute, status in [
            ("c1", 0, "ok"),
            ("c1", 7, "ok"),
            ("c1", 12, "ok"),
            ("c1", 31, "black"),
            ("c2", 3, "ok"),
        ]:
            await conn.execute(
                "INSERT INTO camera_health (time, device_id, connected, fps, status)"
                " VALUES (%s, %s, true, 20, %s)",
                (h + minute * M, dev, status),
            )
        # s3 in maintenance for minutes 30-45 of the hour: slots 6, 7 and 8 do not count.
        await conn.execute(
            "INSERT INTO maintenance (device_id, starts_at, ends_at, reason, created_by)"
            " VALUES ('s3', %s, %s, 'test', 'test')",
            (h + 30 * M, h + 45 * M),
        )
        maintainer = Maintainer(RollupSettings(lag_seconds=0))
        result = await maintainer.catch_up(conn)
        assert result.caught_up and result.readings == 9
        yield World(settings, conn, h, now, maintainer)
    finally:
        await conn.close()
        await drop_database(services, name)


async def one(conn: Conn, query: str, *params: Any) -> dict[str, Any]:
    row = await (await conn.execute(query, params)).fetchone()
    assert row is not None, f"no row for {query} {params}"
    return dict(row)  # type: ignore[arg-type]


async def test_sensor_buckets_match_hand_computed_values(world: World) -> None:
    c, h = world.conn, world.h
    m0 = await one(c, "SELECT * FROM traffic_sensor_1m WHERE device_id = 's1' AND bucket = %s", h)
    assert (m0["readings"], m0["volume"], m0["speed_sum"]) == (2, 9, 44.0)
    assert (m0["speed_min"], m0["speed_max"]) == (20.0, 24.0)
    assert m0["occupancy_sum"] == pytest.approx(1.1)
    assert m0["speed_p50"] is None  # no percentiles per minute
    q = await one(c, "SELECT * FROM traffic_sensor_15m WHERE device_id = 's1' AND bucket = %s", h)
    assert (q["readings"], q["volume"], q["speed_sum"]) == (3, 15, 66.0)
    assert q["speed_p50"] == 22.0 and q["speed_p85"] == pytest.approx(23.4)  # [20, 22, 24]
    hr = await one(c, "SELECT * FROM traffic_sensor_1h WHERE device_id = 's1' AND bucket = %s", h)
    assert (hr["readings"], hr["volume"], hr["speed_sum"]) == (5, 30, 136.0)
    assert hr["speed_p50"] == 24.0 and hr["speed_p85"] == pytest.approx(34.0)  # [20..40]


async def test_area_buckets_cover_the_subtree(world: World) -> None:
    c, h = world.conn, world.h
    q = await one(
        c, "SELECT * FROM traffic_area_15m WHERE area_id = 'dong-xoai' AND bucket = %s", h
    )
    # s1 (mean 22 < 25: congested) and s2 (45): two sensors, one congested.
    assert (q["sensors"], q["congested"], q["readings"], q["volume"]) == (2, 1, 4, 25)
    p = await one(c, "SELECT * FROM traffic_area_1h WHERE area_id = 'VN-58' AND bucket = %s", h)
    # s1 mean 27.2 (not < 25), s2 45, s3 mean 30 (not < 30): none congested over the hour.
    assert (p["sensors"], p["congested"], p["readings"], p["volume"]) == (3, 0, 8, 45)
    assert p["speed_sum"] == 241.0 and (p["speed_min"], p["speed_max"]) == (10.0, 50.0)
    # [10, 20, 22, 24, 30, 40, 45, 50]: median 27, p85 at 5.95 -> 40 + 0.95 * 5 = 44.75.
    assert p["speed_p50"] == 27.0 and p["speed_p85"] == pytest.approx(44.75)


async def test_availability_excludes_maintenance(world: World) -> None:
    c, h = world.conn, world.h

    async def av(area: str, kind: str) -> tuple[int, int, int, int]:
        r = await one(
            c,
            "SELECT * FROM availability_area_1h WHERE area_id = %s AND kind = %s AND bucket = %s",
            area,
            kind,
            h,
        )
        return r["devices"], r["slots_expected"], r["slots_up"], r["slots_maintenance"]

    # s1 reads in slots 0, 3, 11; s2 in slot 0; s3 in slots 1, 4 and is away for 6-8.
    assert await av("dong-xoai", "traffic_sensor") == (2, 24, 4, 0)
    assert await av("binh-long", "traffic_sensor") == (1, 9, 2, 3)
    assert await av("VN-58", "traffic_sensor") == (3, 33, 6, 3)
    # c1 has a good picture in slots 0, 1, 2 (black in 6); c2 in slot 0.
    assert await av("dong-xoai", "camera") == (1, 12, 3, 0)
    assert await av("VN-58", "camera") == (2, 24, 4, 0)


async def test_late_reading_corrects_every_affected_bucket(world: World) -> None:
    c, h = world.conn, world.h
    await reading(c, "s2", h + 50 * M, 5, 1, 0.3, 500)  # 50 minutes late: slot 10, quarter 3
    result = await world.maintainer.tick(c)
    assert result.readings == 1
    s2 = await one(c, "SELECT * FROM traffic_sensor_1h WHERE device_id = 's2' AND bucket = %s", h)
    assert (s2["readings"], s2["volume"], s2["speed_sum"]) == (2, 11, 50.0)
    assert s2["speed_p50"] == 25.0  # percentiles recomputed once the bucket is rolled up again
    a = await one(c, "SELECT * FROM traffic_area_1h WHERE area_id = 'dong-xoai' AND bucket = %s", h)
    assert (a["readings"], a["volume"], a["speed_p50"]) == (7, 41, 24.0)
    q = await one(
        c,
        "SELECT * FROM traffic_area_15m WHERE area_id = 'dong-xoai' AND bucket = %s",
        h + 45 * M,
    )
    assert (q["sensors"], q["congested"]) == (2, 1)  # s1 at 40, s2 at 5 km/h
    v = await one(
        c,
        "SELECT * FROM availability_area_1h WHERE area_id = 'dong-xoai'"
        " AND kind = 'traffic_sensor' AND bucket = %s",
        h,
    )
    assert (v["slots_expected"], v["slots_up"]) == (24, 5)
    left = await one(c, "SELECT count(*) AS n FROM rollup_dirty")
    assert left["n"] == 0, "the late slot was recomputed and its mark consumed"


async def test_changed_maintenance_window_is_recomputed(world: World) -> None:
    c, h = world.conn, world.h
    # Cancelled one minute in: only slot 6 is still touched by the window.
    await c.execute(
        "UPDATE maintenance SET cancelled_at = starts_at + interval '1 minute'"
        " WHERE device_id = 's3'"
    )
    await world.maintainer.tick(c)
    v = await one(
        c,
        "SELECT * FROM availability_area_1h WHERE area_id = 'binh-long'"
        " AND kind = 'traffic_sensor' AND bucket = %s",
        h,
    )
    assert (v["slots_expected"], v["slots_up"], v["slots_maintenance"]) == (11, 2, 1)


async def test_reading_of_a_transaction_open_during_a_tick_is_not_lost(world: World) -> None:
    c, h = world.conn, world.h
    other = await connect(world.settings.dsn)
    try:
        await reading(other, "s1", h + 58 * M, 33, 2, 0.2, 600)  # received_at = its start
        await asyncio.sleep(0.05)
        first = await world.maintainer.tick(c)  # runs while the insert is not committed
        assert first.readings == 0
        await other.commit()
    finally:
        await other.close()
    second = await world.maintainer.tick(c)
    assert second.readings == 1, "the tick must not have moved past the open transaction"
    s1 = await one(c, "SELECT * FROM traffic_sensor_1h WHERE device_id = 's1' AND bucket = %s", h)
    assert s1["readings"] == 6


async def test_readings_older_than_raw_retention_are_counted_not_rolled_up(world: World) -> None:
    c = world.conn
    old = floor(world.now, HOUR.width) - timedelta(days=3)
    await reading(c, "s1", old, 33, 2, 0.2, 700)
    strict = Maintainer(RollupSettings(lag_seconds=0, raw_retention_days=1))
    result = await strict.tick(c)
    assert (result.readings, result.too_late) == (0, 1)
    gone = await one(
        c, "SELECT count(*) AS n FROM traffic_sensor_1m WHERE bucket = %s", floor(old, M)
    )
    assert gone["n"] == 0
    state = await one(c, "SELECT too_late FROM rollup_state WHERE name = 'traffic'")
    assert state["too_late"] == 1


async def test_a_second_tick_changes_nothing(world: World) -> None:
    c = world.conn
    before = await one(c, "SELECT sum(speed_sum) AS s, count(*) AS n FROM traffic_area_15m")
    result = await world.maintainer.tick(c)
    # At most a slot that just completed, and the ones before it computed again.
    assert result.readings == 0 and result.slots <= 1 + CAMERA_SETTLE // SLOT.width
    after = await one(c, "SELECT sum(speed_sum) AS s, count(*) AS n FROM traffic_area_15m")
    assert before == after


async def test_every_figure_from_rollups_equals_the_raw_computation(world: World) -> None:
    """After the late reading, the maintenance change and the in-flight transaction above,
    the rollups must still give exactly what the raw rows give."""
    c, h = world.conn, world.h
    await world.maintainer.tick(c)
    raw = RawSource()
    now = (await one(c, "SELECT now() AS t"))["t"]
    fast = await leader.leader_figures(c, tz=VN, now=now)
    slow = await leader.leader_figures(
        c, tz=VN, now=now, source=raw, through=(fast.traffic_through, fast.availability_through)
    )
    agree(asdict(fast), asdict(slow))
    end = floor(now, HOUR.width)
    for step in ("15m", "1h"):
        a = await read.area_stats(c, area_id="VN-58", step=step, start=h, end=end, tz=VN)
        b = await read.area_stats(
            c, area_id="VN-58", step=step, start=h, end=end, tz=VN, source=raw
        )
        agree(asdict(a), asdict(b))
        assert a.points and a.totals.vehicles.value == 48.0  # 45, + 1 late, + 2 in flight
    for step in ("1m", "15m", "1h"):
        a1 = await read.device_series(c, device_id="s1", step=step, start=h, end=end, tz=VN)
        b1 = await read.device_series(
            c, device_id="s1", step=step, start=h, end=end, tz=VN, source=raw
        )
        agree([asdict(t) | {"t": b} for b, t in a1], [asdict(t) | {"t": b} for b, t in b1])
    # Yesterday (local) is complete and availability is rolled up from device creation on.
    d = local_day(now, VN) - timedelta(days=1)
    ids = ["VN-58", "dong-xoai", "binh-long"]
    rep = await read.availability_report(c, area_ids=ids, first_day=d, last_day=d, tz=VN)
    ref = await read.availability_report(
        c, area_ids=ids, first_day=d, last_day=d, tz=VN, source=raw
    )
    assert rep, "no availability rows for yesterday"
    agree([asdict(r) for r in rep], [asdict(r) for r in ref])
