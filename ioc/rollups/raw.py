"""The same primitives as ``RollupSource``, computed from the raw hypertables at query time:
the reference that tests and ``ioc bench queries`` compare the rollups with, and the slow
path the rollups exist to avoid. Definitions must match sql.py exactly."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from ioc.rollups import sql
from ioc.rollups.levels import BY_NAME, CONGESTED_BELOW, HOUR, SLOT, buckets, floor
from ioc.rollups.source import (
    AVAILABILITY_SUMS,
    Availability,
    Conn,
    Step,
    Traffic,
    availability_of,
    rows,
    traffic_of,
)

# Readings of the sensors under each requested area.
_MEMBERS = """traffic_observations o
    JOIN devices d ON d.id = o.device_id AND d.kind = 'traffic_sensor'
    JOIN area_closure c ON c.area_id = d.area_id AND c.ancestor_id = ANY(%(a)s)"""
_SUMS = """count(*)::bigint AS readings, sum(o.intensity)::bigint AS volume,
           sum(o.average_speed::float8) AS speed_sum, sum(o.occupancy::float8) AS occupancy_sum,
           min(o.average_speed) AS speed_min, max(o.average_speed) AS speed_max"""


class RawSource:
    name = "raw"

    async def traffic_total(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[str, Traffic]:
        if t1 <= t0:
            return {}
        query = f"""SELECT c.ancestor_id AS area_id, {_SUMS} FROM {_MEMBERS}
                    WHERE o.time >= %(t0)s AND o.time < %(t1)s GROUP BY 1"""
        p = {"a": areas, "t0": t0, "t1": t1}
        return {r["area_id"]: traffic_of(r) for r in await rows(conn, query, p)}

    async def traffic_buckets(
        self, conn: Conn, areas: list[str], step: Step, t0: datetime, t1: datetime, tz: str
    ) -> dict[tuple[str, datetime], Traffic]:
        # Per sensor and bucket first (congestion is a per-sensor mean), then per area; a day
        # counts sensor-hours, as the hourly rollups it is added up from do.
        width = (HOUR if step == "1d" else BY_NAME[step]).interval
        outer = "time_bucket('1 day', b, %(tz)s)" if step == "1d" else "b"
        query = f"""
            WITH per AS (
                SELECT c.ancestor_id AS area_id, time_bucket('{width}', o.time) AS b,
                       {_SUMS},
                       avg(o.average_speed) < {CONGESTED_BELOW} * min({sql.FREE_FLOW})
                           AS congested
                FROM {_MEMBERS}
                WHERE o.time >= %(t0)s AND o.time < %(t1)s
                GROUP BY 1, 2, o.device_id)
            SELECT area_id, {outer} AS b, sum(readings)::bigint AS readings,
                   sum(volume)::bigint AS volume, sum(speed_sum) AS speed_sum,
                   sum(occupancy_sum) AS occupancy_sum, min(speed_min) AS speed_min,
                   max(speed_max) AS speed_max, count(*) AS sensors,
                   count(*) FILTER (WHERE congested) AS congested
            FROM per GROUP BY 1, 2"""
        p = {"a": areas, "t0": t0, "t1": t1, "tz": tz}
        out = {(r["area_id"], r["b"]): r for r in await rows(conn, query, p)}
        pcts: dict[tuple[str, datetime], Any] = {}
        if step in ("15m", "1h"):
            query = f"""SELECT c.ancestor_id AS area_id, time_bucket('{width}', o.time) AS b,
                               {sql.RAW_PERCENTILES}
                        FROM {_MEMBERS}
                        WHERE o.time >= %(t0)s AND o.time < %(t1)s GROUP BY 1, 2"""
            pcts = {(r["area_id"], r["b"]): r for r in await rows(conn, query, p)}
        return {k: traffic_of(r | _pcts(pcts.get(k))) for k, r in out.items()}

    async def sensor_buckets(
        self, conn: Conn, device_id: str, step: Step, t0: datetime, t1: datetime, tz: str
    ) -> dict[datetime, Traffic]:
        b = (
            "time_bucket('1 day', o.time, %(tz)s)"
            if step == "1d"
            else f"time_bucket('{BY_NAME[step].interval}', o.time)"
        )
        pcts = sql.RAW_PERCENTILES if step in ("15m", "1h") else "NULL AS speed_p50"
        query = f"""SELECT {b} AS b, {_SUMS}, {pcts}
                    FROM traffic_observations o
                    WHERE o.device_id = %(d)s AND o.time >= %(t0)s AND o.time < %(t1)s
                    GROUP BY 1"""
        p = {"d": device_id, "t0": t0, "t1": t1, "tz": tz}
        return {r["b"]: traffic_of(r) for r in await rows(conn, query, p)}

    async def sensor_totals(
        self, conn: Conn, devices: list[str], t0: datetime, t1: datetime
    ) -> dict[str, Traffic]:
        if t1 <= t0 or not devices:
            return {}
        query = f"""SELECT o.device_id, {_SUMS} FROM traffic_observations o
                    WHERE o.device_id = ANY(%(d)s) AND o.time >= %(t0)s AND o.time < %(t1)s
                    GROUP BY 1"""
        p = {"d": devices, "t0": t0, "t1": t1}
        return {r["device_id"]: traffic_of(r) for r in await rows(conn, query, p)}

    async def sensor_speeds(
        self, conn: Conn, devices: list[str], t0: datetime, t1: datetime
    ) -> dict[str, tuple[int, float]]:
        return {
            k: (t.readings, t.speed_sum)
            for k, t in (await self.sensor_totals(conn, devices, t0, t1)).items()
        }

    async def _availability(
        self, conn: Conn, t0: datetime, t1: datetime, group: str, tz: str
    ) -> list[Any]:
        slots = buckets(floor(t0, SLOT.width), t1, SLOT.width)
        if not slots:
            return []
        query = f"""SELECT area_id, kind, {group} AS g, {AVAILABILITY_SUMS}
                    FROM ({sql.AVAILABILITY}) x GROUP BY 1, 2, 3"""
        return await rows(conn, query, {"slots": slots, "t0": t0, "t1": t1, "tz": tz})

    async def availability_total(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[tuple[str, str], Availability]:
        got = await self._availability(conn, t0, t1, "0", "UTC")
        return {(r["area_id"], r["kind"]): availability_of(r) for r in got if r["area_id"] in areas}

    async def availability_days(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime, tz: str
    ) -> dict[tuple[str, str, date], Availability]:
        # Per hour first (devices = the most in any slot of the hour), as the rollup does.
        got = await self._availability(conn, t0, t1, "time_bucket('1 hour', bucket)", tz)
        days: dict[tuple[str, str, date], list[Any]] = {}
        for r in got:
            if r["area_id"] in areas:
                key = (r["area_id"], r["kind"], r["g"].astimezone(_zone(tz)).date())
                days.setdefault(key, []).append(r)
        return {
            k: Availability(
                devices=max(int(r["devices"]) for r in v),
                slots_expected=sum(int(r["slots_expected"]) for r in v),
                slots_up=sum(int(r["slots_up"]) for r in v),
                slots_maintenance=sum(int(r["slots_maintenance"]) for r in v),
            )
            for k, v in days.items()
        }

    async def availability_quarters(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[tuple[str, str, datetime], Availability]:
        got = await self._availability(conn, t0, t1, "time_bucket('15 minutes', bucket)", "UTC")
        return {
            (r["area_id"], r["kind"], r["g"]): availability_of(r)
            for r in got
            if r["area_id"] in areas
        }


def _pcts(r: Any) -> dict[str, Any]:
    if r is None:
        return {"speed_p50": None, "speed_p85": None}
    return {"speed_p50": r["speed_p50"], "speed_p85": r["speed_p85"]}


def _zone(tz: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)
