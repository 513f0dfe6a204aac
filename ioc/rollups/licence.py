"""Which TimescaleDB edition runs, and the continuous aggregates used when it allows them.

The Apache edition (built here) refuses continuous aggregates, compression and policies; the
production image (``timescale/timescaledb``) runs the 'timescale' licence and has them. On
that licence the per-sensor levels are continuous aggregates (``traffic_sensor_<level>_ca``,
refreshed by TimescaleDB's own policy) instead of app-maintained tables. Per-area levels and
availability stay app-maintained on both editions: a continuous aggregate allows one
hypertable joined to one plain table and no nested aggregation, and "sensors congested in
the bucket" needs both (see docs/rollups.md).

These objects depend on the server, not on the schema version, so ``ensure_tsl`` creates them
at the start of ``ioc rollups`` rather than in a migration; every statement is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import structlog

from ioc.rollups.levels import TRAFFIC_LEVELS, Level
from ioc.rollups.sql import RAW_PERCENTILES, RAW_SUMS

log = structlog.get_logger("ioc.rollups")
TSL = "timescale"


async def licence(conn: psycopg.AsyncConnection[Any]) -> str:
    """'apache', 'timescale' (or '' when the setting is missing: not TimescaleDB)."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT current_setting('timescaledb.license', true) AS l")
        row = await cur.fetchone()
    value = (row["l"] if isinstance(row, dict) else row[0]) if row else None
    return str(value or "")


def cagg_name(level: Level) -> str:
    return f"traffic_sensor_{level.name}_ca"


def cagg_query(level: Level) -> str:
    """The SELECT of a per-sensor continuous aggregate: the same sums as the app path
    (sql.RAW_SUMS), plus the percentiles at 15 min and 1 h (a finalized continuous aggregate
    allows ordered-set aggregates). Readers take the 1-minute percentiles as NULL."""
    percentiles = f",\n       {RAW_PERCENTILES}" if level.name != "1m" else ""
    return f"""SELECT time_bucket('{level.interval}', o.time) AS bucket, o.device_id,
       {RAW_SUMS}{percentiles}
FROM traffic_observations o
GROUP BY 1, 2"""


@dataclass(frozen=True, slots=True)
class RefreshWindow:
    """Refresh policy of one continuous aggregate. start_offset bounds how late a reading can
    be and still correct its bucket; it stays well inside raw retention, or a refresh would
    empty buckets whose raw data is gone."""

    start_offset: timedelta
    end_offset: timedelta
    schedule: timedelta


def refresh_window(level: Level, late_days: float = 3.0) -> RefreshWindow:
    return RefreshWindow(
        start_offset=timedelta(days=late_days),
        end_offset=level.width,  # the open bucket is computed at query time (real-time)
        schedule=max(timedelta(minutes=1), level.width),
    )


def level_statements(level: Level, late_days: float = 3.0) -> list[str]:
    """The continuous aggregate of one level and its refresh policy. Each statement must run
    outside a transaction block (CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous)
    requires it). TimescaleDB indexes the group-by columns itself."""
    name = cagg_name(level)
    w = refresh_window(level, late_days)
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\n"
        f"{cagg_query(level)}\nWITH NO DATA",
        f"SELECT add_continuous_aggregate_policy('{name}',"
        f" start_offset => interval '{int(w.start_offset.total_seconds())} seconds',"
        f" end_offset => interval '{int(w.end_offset.total_seconds())} seconds',"
        f" schedule_interval => interval '{int(w.schedule.total_seconds())} seconds',"
        " if_not_exists => true)",
    ]


def tsl_statements(late_days: float = 3.0) -> list[str]:
    return [s for level in TRAFFIC_LEVELS for s in level_statements(level, late_days)]


async def ensure_tsl(dsn: str, *, late_days: float = 3.0) -> None:
    """Create the continuous aggregates and their policies (idempotent), then materialise
    what the raw table already holds (once: the policy only looks back ``late_days``)."""
    from ioc.db.connect import connect

    conn = await connect(dsn, autocommit=True)
    try:
        async with conn.cursor() as cur:
            for level in TRAFFIC_LEVELS:
                name = cagg_name(level)
                await cur.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (name,))
                row = await cur.fetchone()
                existed = bool(row and (row["present"] if isinstance(row, dict) else row[0]))
                for statement in level_statements(level, late_days):
                    await cur.execute(statement)
                if not existed:
                    await cur.execute(
                        f"CALL refresh_continuous_aggregate('{name}', NULL,"
                        f" now() - interval '{level.interval}')"
                    )
                    log.info("continuous aggregate created", name=name)
    finally:
        await conn.close()


async def uses_caggs(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the per-sensor levels are read from the continuous aggregates: the licence
    allows them and ``ioc rollups`` has created them."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT current_setting('timescaledb.license', true) = %s"
            " AND to_regclass('traffic_sensor_1m_ca') IS NOT NULL AS yes",
            (TSL,),
        )
        row = await cur.fetchone()
    return bool(row and (row["yes"] if isinstance(row, dict) else row[0]))
