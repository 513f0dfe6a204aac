"""Retention drops whole chunks past their limit (raw 30 days, rollups 2 years, 1-minute
rollups as configured) and nothing else; a chunk partly inside the limit stays whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from ioc.config import Settings
from ioc.db.connect import connect
from ioc.rollups import retention
from ioc.rollups.config import RollupSettings
from ioc.rollups.worker import RollupWorker
from tests.conftest import drop_database, own_database
from tests.integration.test_rollup_maintain import reading

pytestmark = pytest.mark.integration
Conn = psycopg.AsyncConnection[Any]
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
async def db(services: Settings) -> AsyncIterator[tuple[Conn, datetime]]:
    settings, name = await own_database(services, "ioc_rollup_ret")
    conn = await connect(settings.dsn, autocommit=True)
    try:
        now = (await (await conn.execute("SELECT now() AS t")).fetchone())["t"]  # type: ignore[index]
        yield conn, now
    finally:
        await conn.close()
        await drop_database(services, name)


async def times(conn: Conn, table: str, column: str = "time") -> list[datetime]:
    rows = await (await conn.execute(f"SELECT {column} AS t FROM {table} ORDER BY 1")).fetchall()
    return [r["t"] for r in rows]  # type: ignore[call-overload]


async def chunks(conn: Conn, table: str) -> int:
    row = await (
        await conn.execute("SELECT count(*) AS n FROM show_chunks(%s)", (table,))
    ).fetchone()
    return int(row["n"])  # type: ignore[index]


async def test_retention_drops_whole_expired_chunks_only(db: tuple[Conn, datetime]) -> None:
    conn, now = db
    cutoff = now - 30 * DAY
    # The 1-day chunk holding the cutoff keeps its older rows: only whole chunks go.
    day0 = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    straddle = [day0 + timedelta(seconds=1), day0 + DAY - timedelta(minutes=1)]
    assert straddle[0] < cutoff < straddle[1]
    raw = [now - 40 * DAY, *straddle, now - 29 * DAY, now - DAY]
    for i, t in enumerate(raw):
        await reading(conn, "s1", t, 30, 1, 0.1, i)
        await conn.execute(
            "INSERT INTO camera_health (time, device_id, connected, status) VALUES (%s, 'c1',"
            " true, 'ok')",
            (t,),
        )
    for t in (now - 900 * DAY, now - 700 * DAY, now - DAY):
        await conn.execute(
            "INSERT INTO traffic_area_1h (bucket, area_id, sensors, congested, readings, volume,"
            " speed_sum, speed_min, speed_max, occupancy_sum) VALUES (%s, 'a', 1, 0, 1, 1, 1,"
            " 1, 1, 1)",
            (t,),
        )
    for t in (now - 100 * DAY, now - 80 * DAY):
        await conn.execute(
            "INSERT INTO traffic_sensor_1m (bucket, device_id, readings, volume, speed_sum,"
            " speed_min, speed_max, occupancy_sum) VALUES (%s, 's1', 1, 1, 1, 1, 1, 1)",
            (t,),
        )
    before = await chunks(conn, "traffic_observations")

    settings = RollupSettings(raw_retention_days=30, retention_days=730, retention_1m_days=90)
    dropped = await retention.apply(conn, settings)

    assert await times(conn, "traffic_observations") == raw[1:]  # 40 days old: gone
    assert await times(conn, "camera_health") == raw[1:]
    assert await chunks(conn, "traffic_observations") == before - 1
    assert await times(conn, "traffic_area_1h", "bucket") == [now - 700 * DAY, now - DAY]
    assert await times(conn, "traffic_sensor_1m", "bucket") == [now - 80 * DAY]
    assert set(dropped) == {
        "traffic_observations",
        "camera_health",
        "traffic_area_1h",
        "traffic_sensor_1m",
    }
    assert all(len(c) == 1 for c in dropped.values())
    assert await retention.apply(conn, settings) == {}, "a second run has nothing to drop"


async def test_the_role_rolls_up_new_readings_and_stops_when_told(
    db: tuple[Conn, datetime], services: Settings
) -> None:
    conn, now = db
    dsn = (await (await conn.execute("SELECT current_database() AS d")).fetchone())["d"]  # type: ignore[index]
    worker = RollupWorker(
        dsn=services.dsn.rsplit("/", 1)[0] + "/" + dsn,
        settings=RollupSettings(interval_seconds=0.2, lag_seconds=0),
    )
    task = asyncio.create_task(worker.run())
    try:
        await reading(conn, "s9", now - timedelta(minutes=10), 42, 3, 0.1, 1)
        for _ in range(100):
            row = await (
                await conn.execute("SELECT readings FROM traffic_sensor_1m WHERE device_id = 's9'")
            ).fetchone()
            if row and worker.readings:  # committed, and the tick has returned
                break
            await asyncio.sleep(0.1)
        assert row and row["readings"] == 1  # type: ignore[index]
        assert worker.ticks >= 1 and worker.readings >= 1
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert task.done() and task.exception() is None


async def test_past_thumbnails_go_by_whole_chunks_after_their_hours(
    db: tuple[Conn, datetime],
) -> None:
    """History (1-hour chunks) is kept IOC_THUMBNAIL_HISTORY_HOURS; with 0 (history off) every
    chunk that has ended goes. A latest thumbnail older than the raw limit goes too."""
    conn, _ = db
    now = (await (await conn.execute("SELECT now() AS t")).fetchone())["t"]  # type: ignore[index]
    await conn.execute(
        """INSERT INTO areas (id, parent_id, name, name_en, level, lat, lon, depth)
           VALUES ('ret-p', NULL, 'P', 'P', 'province', 11.7, 106.7, 0) ON CONFLICT DO NOTHING"""
    )
    for cam in ("ret-cam-1", "ret-cam-2"):
        await conn.execute(
            "INSERT INTO devices (id, kind, name, area_id, lat, lon) VALUES"
            " (%s, 'camera', 'c', 'ret-p', 11.7, 106.7)",
            (cam,),
        )
    taken = [now - timedelta(hours=5), now - timedelta(hours=3), now - timedelta(minutes=90), now]
    for t in taken:
        await conn.execute(
            "INSERT INTO camera_thumbnail_history (device_id, taken_at, width, height, jpeg)"
            " VALUES ('ret-cam-1', %s, 320, 180, '\\xffd8ffd9'::bytea)",
            (t,),
        )
    await conn.execute(
        "INSERT INTO camera_thumbnails (device_id, taken_at, width, height, jpeg) VALUES"
        " ('ret-cam-1', %s, 320, 180, '\\xffd8'), ('ret-cam-2', %s, 320, 180, '\\xffd8')",
        (now, now - 31 * DAY),
    )
    history = "camera_thumbnail_history"

    dropped = await retention.apply(conn, RollupSettings(thumbnail_history_hours=2))
    assert await times(conn, history, "taken_at") == taken[2:]
    assert len(dropped[history]) == 2  # the chunks of 5 and 3 hours ago, whole
    assert await times(conn, "camera_thumbnails", "taken_at") == [now]  # 31 days old: gone

    dropped = await retention.apply(conn, RollupSettings(thumbnail_history_hours=0))
    assert await times(conn, history, "taken_at") == [now]  # only the chunk still open stays
    assert len(dropped[history]) == 1
    assert await chunks(conn, history) == 1
