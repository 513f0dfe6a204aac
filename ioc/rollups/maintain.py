"""Incremental maintenance of the rollup tables: one ``tick`` rolls up the readings received
since the last one, recomputing every bucket they touch (late readings included), then the
availability slots that completed, or that a maintenance change or a late reading affected.

Finding new readings: by ``received_at``, the time their ingest transaction started. A row
becomes visible only when that transaction commits, possibly after a later-starting one, so
a tick takes readings received strictly before the start of any transaction still open
(pg_stat_activity) and before now − lag. The bound is read in its own statement before the
rows are, so a transaction that commits in between is already visible when they are read.

Safe to run in several processes: each part locks its row of ``rollup_state``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog

from ioc.rollups import sql
from ioc.rollups.config import RollupSettings
from ioc.rollups.levels import HOUR, MINUTE, QUARTER, SLOT, TRAFFIC_LEVELS, floor, runs

PERCENTILE_LEVELS = (QUARTER, HOUR)

log = structlog.get_logger("ioc.rollups")
Conn = psycopg.AsyncConnection[Any]
DAY = timedelta(days=1)
CAMERA_SETTLE = timedelta(minutes=10)
# Sorts and hashes of a catch-up fit in memory; JIT compilation costs more than it saves on
# these short, many-row statements (it was measured adding ~1 s to a 0.2 s statement).
LOCAL_SETTINGS = "SET LOCAL work_mem = '64MB'; SET LOCAL jit = off"


@dataclass
class TickResult:
    readings: int = 0  # readings rolled up by this tick
    too_late: int = 0  # readings for times whose raw data retention already dropped
    rows: dict[str, int] = field(default_factory=dict)  # rollup rows written, per table
    seconds: dict[str, float] = field(default_factory=dict)  # time spent, per table
    slots: int = 0  # 5-minute availability slots computed
    traffic_watermark: datetime | None = None
    availability_watermark: datetime | None = None
    caught_up: bool = True  # False: more received readings wait beyond this tick's step

    def add_rows(self, table: str, n: int, seconds: float = 0.0) -> None:
        self.rows[table] = self.rows.get(table, 0) + max(n, 0)
        self.seconds[table] = self.seconds.get(table, 0.0) + seconds


class Maintainer:
    """Owns no connection: each call gets one (autocommit; the maintainer opens its own
    transactions). ``tsl=True`` leaves the per-sensor levels to continuous aggregates."""

    def __init__(self, settings: RollupSettings, *, tsl: bool = False) -> None:
        self.settings = settings
        self.tsl = tsl

    async def tick(self, conn: Conn) -> TickResult:
        bound, horizon = await self._bound(conn)
        result = TickResult()
        await self._traffic(conn, bound, horizon, result)
        await self._availability(conn, bound, horizon, result)
        return result

    async def catch_up(self, conn: Conn, *, max_ticks: int = 100_000) -> TickResult:
        """Tick until every reading received so far is rolled up; the sum of the ticks."""
        total = TickResult()
        for _ in range(max_ticks):
            r = await self.tick(conn)
            total.readings += r.readings
            total.too_late += r.too_late
            total.slots += r.slots
            for k, v in r.rows.items():
                total.add_rows(k, v, r.seconds.get(k, 0.0))
            total.traffic_watermark = r.traffic_watermark
            total.availability_watermark = r.availability_watermark
            if r.caught_up:
                return total
        total.caught_up = False
        return total

    # ------------------------------------------------------------------------- bound ---

    async def _bound(self, conn: Conn) -> tuple[datetime, datetime]:
        s = self.settings
        async with conn.cursor() as cur:
            await cur.execute(
                """SELECT least(clock_timestamp() - make_interval(secs => %(lag)s),
                                (SELECT min(xact_start) FROM pg_stat_activity
                                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                                   AND backend_type = 'client backend'
                                   AND xact_start > clock_timestamp()
                                                    - make_interval(secs => %(cap)s)))
                          - interval '1 microsecond' AS bound,
                          now() - make_interval(secs => %(raw)s) AS horizon""",
                {
                    "lag": s.lag_seconds,
                    "cap": s.max_transaction_age_seconds,
                    "raw": s.raw_retention_days * 86400,
                },
            )
            row = await cur.fetchone()
        assert row is not None
        return _get(row, "bound", 0), _get(row, "horizon", 1)

    # ----------------------------------------------------------------------- traffic ---

    async def _traffic(
        self, conn: Conn, bound: datetime, horizon: datetime, result: TickResult
    ) -> None:
        step = timedelta(minutes=self.settings.step_minutes)
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(LOCAL_SETTINGS)
            await cur.execute(
                "SELECT watermark FROM rollup_state WHERE name = 'traffic' FOR UPDATE"
            )
            lo = _get(await cur.fetchone(), "watermark", 0)
            if lo is None:
                await cur.execute("SELECT min(received_at) AS first FROM traffic_observations")
                first = _get(await cur.fetchone(), "first", 0)
                lo = first - timedelta(microseconds=1) if first is not None else bound
            hi = max(lo, min(bound, lo + step))
            result.caught_up = hi >= bound
            if hi > lo:
                await self._new_readings(cur, lo, hi, horizon, result)
            await self._percentiles(cur, bound, horizon, result)
            await cur.execute(
                """UPDATE rollup_state SET watermark = %(hi)s, too_late = too_late + %(late)s,
                          updated_at = now() WHERE name = 'traffic'""",
                {"hi": hi, "late": result.too_late},
            )
            result.traffic_watermark = hi
        if result.too_late:
            log.warning(
                "readings too late to roll up (raw retention passed)", readings=result.too_late
            )

    async def _new_readings(
        self,
        cur: psycopg.AsyncCursor[Any],
        lo: datetime,
        hi: datetime,
        horizon: datetime,
        result: TickResult,
    ) -> None:
        await cur.execute(sql.NEW_READINGS, {"lo": lo, "hi": hi})
        # Readings for an hour whose raw data retention may already have dropped cannot be
        # rolled up without destroying the bucket: count them, leave the bucket alone.
        await cur.execute(
            """WITH gone AS (DELETE FROM rollup_new
                             WHERE time_bucket('1 hour', bucket) < %(h)s RETURNING n)
               SELECT coalesce(sum(n), 0)::bigint AS n FROM gone""",
            {"h": horizon},
        )
        result.too_late = int(_get(await cur.fetchone(), "n", 0))
        await cur.execute("ANALYZE rollup_new")
        await cur.execute(
            "SELECT coalesce(sum(n), 0)::bigint AS n,"
            " array_agg(DISTINCT time_bucket('1 hour', bucket)) AS hours FROM rollup_new"
        )
        row = await cur.fetchone()
        result.readings = int(_get(row, "n", 0))
        # One pass per run of consecutive hours touched: a late reading from last week does
        # not make the statements for this hour scan a week of raw data.
        for t0, t1 in runs(_get(row, "hours", 1) or [], HOUR.width):
            for statement, table in self._traffic_statements():
                started = time.perf_counter()
                await cur.execute(statement, {"t0": t0, "t1": t1})
                result.add_rows(table, cur.rowcount, time.perf_counter() - started)
        # Late readings for slots whose availability is already computed: mark them. The
        # share lock waits for an availability tick in flight elsewhere to commit first.
        await cur.execute(
            "SELECT watermark FROM rollup_state WHERE name = 'availability' FOR SHARE"
        )
        avail = _get(await cur.fetchone(), "watermark", 0)
        if avail is not None:
            await cur.execute(
                """INSERT INTO rollup_dirty (reason, starts_at, ends_at)
                   SELECT 'late', s, s + interval '5 minutes'
                   FROM (SELECT DISTINCT time_bucket('5 minutes', bucket) AS s FROM rollup_new) x
                   WHERE s < %(w)s""",
                {"w": avail},
            )

    def _traffic_statements(self) -> list[tuple[str, str]]:
        """(statement, table) in dependency order: finer levels before coarser ones."""
        if self.tsl:  # per-sensor levels are continuous aggregates: areas from raw readings
            return [(sql.area_from_raw(lv), f"traffic_area_{lv.name}") for lv in TRAFFIC_LEVELS]
        out = [(sql.sensor_from_raw(MINUTE), "traffic_sensor_1m")]
        for finer, level in zip(TRAFFIC_LEVELS, TRAFFIC_LEVELS[1:], strict=False):
            out.append((sql.sensor_from_finer(level, finer), f"traffic_sensor_{level.name}"))
        out += [(sql.area_from_sensors(lv), f"traffic_area_{lv.name}") for lv in TRAFFIC_LEVELS]
        return out

    async def _percentiles(
        self, cur: psycopg.AsyncCursor[Any], bound: datetime, horizon: datetime, result: TickResult
    ) -> None:
        """Percentiles of the buckets that have closed (or were reopened by late readings)."""
        kinds = ("area",) if self.tsl else ("sensor", "area")
        await cur.execute(sql.PENDING_TABLE)
        for kind in kinds:
            for level in PERCENTILE_LEVELS:
                await cur.execute("TRUNCATE rollup_pending")
                await cur.execute(
                    sql.pending_percentiles(kind, level), {"h": horizon, "bound": bound}
                )
                if cur.rowcount <= 0:
                    continue
                await cur.execute("ANALYZE rollup_pending")
                await cur.execute(
                    "SELECT array_agg(DISTINCT time_bucket('1 hour', bucket)) AS hours"
                    " FROM rollup_pending"
                )
                hours = _get(await cur.fetchone(), "hours", 0) or []
                for t0, t1 in runs(hours, HOUR.width):
                    started = time.perf_counter()
                    await cur.execute(
                        sql.percentiles(kind, level), {"t0": t0, "t1": t1, "bound": bound}
                    )
                    result.add_rows(
                        f"traffic_{kind}_{level.name}.percentiles",
                        cur.rowcount,
                        time.perf_counter() - started,
                    )

    # ------------------------------------------------------------------ availability ---

    async def _availability(
        self, conn: Conn, bound: datetime, horizon: datetime, result: TickResult
    ) -> None:
        target = floor(bound, SLOT.width)
        first_slot = floor(horizon, SLOT.width) + SLOT.width
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(LOCAL_SETTINGS)
            await cur.execute(
                "SELECT watermark FROM rollup_state WHERE name = 'availability' FOR UPDATE"
            )
            wm = _get(await cur.fetchone(), "watermark", 0)
            if wm is None:  # first run: from the oldest raw data still kept, or from now
                await cur.execute(
                    """SELECT least((SELECT min(time) FROM traffic_observations
                                     WHERE time >= %(h)s),
                                    (SELECT min(time) FROM camera_health
                                     WHERE time >= %(h)s)) AS first""",
                    {"h": first_slot},
                )
                first = _get(await cur.fetchone(), "first", 0)
                wm = floor(first, SLOT.width) if first is not None else target
            new_hi = max(wm, min(target, wm + DAY))  # at most a day of slots per tick
            slots = set()
            # Camera health rows carry no receive time, so their lateness cannot be seen:
            # whenever slots complete, the few before them are computed once more.
            t = max(first_slot, wm - CAMERA_SETTLE) if new_hi > wm else wm
            while t < new_hi:
                slots.add(t)
                t += SLOT.width
            # Ranges marked dirty (maintenance changed, late readings), within what is done.
            await cur.execute("DELETE FROM rollup_dirty RETURNING starts_at, ends_at")
            for r in await cur.fetchall():
                s0 = max(floor(_get(r, "starts_at", 0), SLOT.width), first_slot)
                s1 = min(_get(r, "ends_at", 1), wm)
                while s0 < s1:
                    slots.add(s0)
                    s0 += SLOT.width
            if slots:
                by_day: dict[datetime, list[datetime]] = defaultdict(list)
                for s in sorted(slots):
                    by_day[floor(s, DAY)].append(s)
                for group in by_day.values():
                    await self._slots(cur, group, result)
            await cur.execute(
                """UPDATE rollup_state SET watermark = %(w)s, updated_at = now()
                   WHERE name = 'availability'""",
                {"w": new_hi},
            )
            result.slots = len(slots)
            result.availability_watermark = new_hi
            if new_hi < target:
                result.caught_up = False

    async def _slots(
        self, cur: psycopg.AsyncCursor[Any], slots: list[datetime], result: TickResult
    ) -> None:
        started = time.perf_counter()
        span = {"slots": slots, "t0": slots[0], "t1": slots[-1] + SLOT.width}
        await cur.execute(
            "DELETE FROM availability_area_5m WHERE bucket = ANY(%(slots)s::timestamptz[])"
            " AND bucket >= %(t0)s AND bucket < %(t1)s",
            span,
        )
        await cur.execute(
            f"INSERT INTO availability_area_5m ({sql.AVAILABILITY_COLUMNS}) {sql.AVAILABILITY}",
            span,
        )
        result.add_rows("availability_area_5m", cur.rowcount, time.perf_counter() - started)
        started = time.perf_counter()
        hours = sorted({floor(s, HOUR.width) for s in slots})
        h = {"hours": hours, "t0": hours[0], "t1": hours[-1] + HOUR.width}
        await cur.execute(
            "DELETE FROM availability_area_1h WHERE bucket = ANY(%(hours)s::timestamptz[])"
            " AND bucket >= %(t0)s AND bucket < %(t1)s",
            h,
        )
        await cur.execute(sql.AVAILABILITY_HOURS, h)
        result.add_rows("availability_area_1h", cur.rowcount, time.perf_counter() - started)


def _get(row: Any, key: str, index: int) -> Any:
    """A column of a row from a dict_row or a tuple cursor (both are used by callers)."""
    if row is None:
        return None
    return row[key] if isinstance(row, dict) else row[index]
