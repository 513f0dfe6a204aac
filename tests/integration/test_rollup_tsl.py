"""The 'timescale'-licence path, tested as far as the Apache edition here allows: the licence
is detected; the continuous-aggregate DDL passes PostgreSQL's parse analysis (names, types,
functions) and stops only at the licence check; the aggregate queries plan; and the
maintainer's TSL mode, run over plain views with the same queries (what a real-time
continuous aggregate returns), produces the same area rollups as the application path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from ioc.bench.queries import agree
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.rollups import licence
from ioc.rollups.config import RollupSettings
from ioc.rollups.levels import HOUR, TRAFFIC_LEVELS, floor
from ioc.rollups.maintain import Maintainer
from ioc.rollups.source import RollupSource
from tests.conftest import drop_database, own_database
from tests.integration.test_rollup_maintain import reading

pytestmark = pytest.mark.integration
Conn = psycopg.AsyncConnection[Any]
AREA_TABLES = ("traffic_area_1m", "traffic_area_15m", "traffic_area_1h")


@pytest.fixture(scope="module")
async def db(services: Settings) -> AsyncIterator[tuple[Conn, datetime]]:
    settings, name = await own_database(services, "ioc_rollup_tsl")
    conn = await connect(settings.dsn, autocommit=True)
    try:
        await seed(conn, load_geography(settings.areas_file), sensors=0, seed_value=1)
        now = (await (await conn.execute("SELECT now() AS t")).fetchone())["t"]  # type: ignore[index]
        h = floor(now, HOUR.width) - 2 * HOUR.width
        for i, (dev, area) in enumerate([("s1", "dong-xoai"), ("s2", "binh-long")]):
            await conn.execute(
                "INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata, created_at)"
                " VALUES (%s, 'traffic_sensor', %s, %s, 11.5, 106.9, %s, %s)",
                (dev, dev, area, Jsonb({"free_flow_kmh": 40 + 10 * i}), h - HOUR.width),
            )
        for m in range(0, 90, 7):  # every 7 minutes for an hour and a half, both sensors
            await reading(conn, "s1", h + timedelta(minutes=m), 10 + m % 30, 3, 0.2, m)
            await reading(conn, "s2", h + timedelta(minutes=m), 50 - m % 20, 2, 0.1, m)
        yield conn, h
    finally:
        await conn.close()
        await drop_database(services, name)


async def test_the_apache_licence_is_detected(db: tuple[Conn, datetime]) -> None:
    conn, _ = db
    assert await licence.licence(conn) == "apache"
    assert not await licence.uses_caggs(conn)


async def test_continuous_aggregate_ddl_stops_only_at_the_licence(
    db: tuple[Conn, datetime],
) -> None:
    conn, _ = db
    for statement in licence.tsl_statements():
        if "add_continuous_aggregate_policy" in statement:
            # The aggregate cannot exist here: aim the same call at a hypertable that does.
            name = statement.split("'")[1]
            statement = statement.replace(f"'{name}'", "'traffic_observations'")
        with pytest.raises(psycopg.Error) as err:
            await conn.execute(statement)
        assert "license" in str(err.value), f"failed before the licence check: {err.value}"
    # The control: a mistake in the same statement is reported before the licence is.
    broken = licence.tsl_statements()[0].replace("o.average_speed", "o.avg_speed")
    with pytest.raises(psycopg.Error) as err:
        await conn.execute(broken)
    assert "license" not in str(err.value) and "avg_speed" in str(err.value)


async def test_continuous_aggregate_queries_plan(db: tuple[Conn, datetime]) -> None:
    conn, _ = db
    for level in TRAFFIC_LEVELS:
        plan = await (await conn.execute("EXPLAIN " + licence.cagg_query(level))).fetchall()
        assert plan


async def snapshot(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for t in AREA_TABLES:
        rows = await (await conn.execute(f"SELECT * FROM {t} ORDER BY area_id, bucket")).fetchall()
        out[t] = [dict(r) for r in rows]  # type: ignore[call-overload]
    return out


async def test_tsl_mode_gives_the_same_rollups_as_the_application_path(
    db: tuple[Conn, datetime],
) -> None:
    conn, h = db
    settings = RollupSettings(lag_seconds=0)
    app = await Maintainer(settings).catch_up(conn)
    assert app.readings == 26
    expected = await snapshot(conn)
    assert expected["traffic_area_1h"], "nothing rolled up"
    # Start again with the per-sensor levels as "continuous aggregates" (views, here).
    for level in TRAFFIC_LEVELS:
        await conn.execute(f"CREATE VIEW {licence.cagg_name(level)} AS {licence.cagg_query(level)}")
    for t in AREA_TABLES:
        await conn.execute(f"TRUNCATE {t}")
    await conn.execute("UPDATE rollup_state SET watermark = NULL")
    tsl = await Maintainer(settings, tsl=True).catch_up(conn)
    assert tsl.readings == 26 and not any(k.startswith("traffic_sensor") for k in tsl.rows)
    agree(await snapshot(conn), expected)
    assert not await licence.uses_caggs(conn), "views are not the licence: still the tables"

    tables, caggs = RollupSource(), RollupSource(continuous_aggregates=True)
    end = h + 2 * HOUR.width
    for step in ("1m", "15m", "1h", "1d"):
        a = await tables.sensor_buckets(conn, "s1", step, h, end, "Asia/Ho_Chi_Minh")  # type: ignore[arg-type]
        b = await caggs.sensor_buckets(conn, "s1", step, h, end, "Asia/Ho_Chi_Minh")  # type: ignore[arg-type]
        assert a, step
        agree({str(k): asdict(v) for k, v in a.items()}, {str(k): asdict(v) for k, v in b.items()})
