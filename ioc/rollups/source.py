"""Where figures come from. ``RollupSource`` reads the rollup tables; ``RawSource`` (raw.py)
computes the same primitives from the raw hypertables, as the reference the tests and the
benchmark compare against. ``read.py`` composes either into the API's figures.

Every primitive covers [t0, t1) and returns sums, never means, so pieces add up exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import dict_row, tuple_row

from ioc.rollups.levels import (
    AVAILABILITY_LEVELS,
    BY_NAME,
    TRAFFIC_LEVELS,
    Level,
    pct,
    ratio,
    tiers,
)

Conn = psycopg.AsyncConnection[Any]
Step = Literal["1m", "15m", "1h", "1d"]
KINDS = ("traffic_sensor", "camera")


@dataclass(frozen=True, slots=True)
class Traffic:
    readings: int = 0
    volume: int = 0
    speed_sum: float = 0.0
    occupancy_sum: float = 0.0
    speed_min: float | None = None
    speed_max: float | None = None
    sensors: int = 0  # per bucket: sensors with readings; per day: sensor-hours
    congested: int = 0  # of those, congested
    speed_p50: float | None = None
    speed_p85: float | None = None

    @property
    def speed_kmh(self) -> float | None:
        return ratio(self.speed_sum, self.readings)

    @property
    def occupancy_pct(self) -> float | None:
        return pct(self.occupancy_sum, self.readings)

    @property
    def congestion_pct(self) -> float | None:
        return pct(self.congested, self.sensors)


@dataclass(frozen=True, slots=True)
class Availability:
    devices: int = 0
    slots_expected: int = 0
    slots_up: int = 0
    slots_maintenance: int = 0

    @property
    def pct(self) -> float | None:
        return pct(self.slots_up, self.slots_expected)


class Source(Protocol):
    name: str

    async def traffic_total(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[str, Traffic]: ...

    async def traffic_buckets(
        self, conn: Conn, areas: list[str], step: Step, t0: datetime, t1: datetime, tz: str
    ) -> dict[tuple[str, datetime], Traffic]: ...

    async def sensor_buckets(
        self, conn: Conn, device_id: str, step: Step, t0: datetime, t1: datetime, tz: str
    ) -> dict[datetime, Traffic]: ...

    async def sensor_totals(
        self, conn: Conn, devices: list[str], t0: datetime, t1: datetime
    ) -> dict[str, Traffic]: ...

    async def sensor_speeds(
        self, conn: Conn, devices: list[str], t0: datetime, t1: datetime
    ) -> dict[str, tuple[int, float]]: ...

    async def availability_total(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[tuple[str, str], Availability]: ...

    async def availability_days(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime, tz: str
    ) -> dict[tuple[str, str, date], Availability]: ...

    async def availability_quarters(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[tuple[str, str, datetime], Availability]: ...


async def rows(conn: Conn, query: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params or {})
        return list(await cur.fetchall())


def traffic_of(r: Any) -> Traffic:
    return Traffic(
        readings=int(r["readings"] or 0),
        volume=int(r["volume"] or 0),
        speed_sum=float(r["speed_sum"] or 0.0),
        occupancy_sum=float(r["occupancy_sum"] or 0.0),
        speed_min=_f(r["speed_min"]),
        speed_max=_f(r["speed_max"]),
        sensors=int(r.get("sensors") or 0),
        congested=int(r.get("congested") or 0),
        speed_p50=_f(r.get("speed_p50")),
        speed_p85=_f(r.get("speed_p85")),
    )


def availability_of(r: Any) -> Availability:
    return Availability(
        devices=int(r["devices"] or 0),
        slots_expected=int(r["slots_expected"] or 0),
        slots_up=int(r["slots_up"] or 0),
        slots_maintenance=int(r["slots_maintenance"] or 0),
    )


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


SUMS = """sum(readings)::bigint AS readings, sum(volume)::bigint AS volume,
          sum(speed_sum) AS speed_sum, sum(occupancy_sum) AS occupancy_sum,
          min(speed_min) AS speed_min, max(speed_max) AS speed_max"""
AREA_SUMS = (
    SUMS
    + """,
          sum(sensors)::bigint AS sensors, sum(congested)::bigint AS congested"""
)
AVAILABILITY_SUMS = """max(devices) AS devices, sum(slots_expected)::bigint AS slots_expected,
          sum(slots_up)::bigint AS slots_up, sum(slots_maintenance)::bigint AS slots_maintenance"""
VALUES = """readings, volume, speed_sum, occupancy_sum, speed_min, speed_max"""


class RollupSource:
    """Reads the rollup tables. ``sensor_relation`` maps a level to the per-sensor relation:
    the app tables, or the continuous aggregates on a 'timescale' licence."""

    name = "rollups"

    def __init__(self, *, continuous_aggregates: bool = False) -> None:
        self.caggs = continuous_aggregates

    def sensor_relation(self, level: str) -> str:
        return f"traffic_sensor_{level}_ca" if self.caggs else f"traffic_sensor_{level}"

    async def traffic_total(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[str, Traffic]:
        got = await _tiered(
            conn,
            lambda lv: f"traffic_area_{lv}",
            "area_id",
            VALUES,
            SUMS,
            (t0, t1, TRAFFIC_LEVELS),
            where="area_id = ANY(%(k)s)",
            keys=areas,
        )
        return {r["area_id"]: traffic_of(r) for r in got}

    async def traffic_buckets(
        self, conn: Conn, areas: list[str], step: Step, t0: datetime, t1: datetime, tz: str
    ) -> dict[tuple[str, datetime], Traffic]:
        p = {"a": areas, "t0": t0, "t1": t1, "tz": tz}
        if step == "1d":
            query = f"""SELECT area_id, time_bucket('1 day', bucket, %(tz)s) AS b, {AREA_SUMS}
                        FROM traffic_area_1h
                        WHERE area_id = ANY(%(a)s) AND bucket >= %(t0)s AND bucket < %(t1)s
                        GROUP BY 1, 2"""
        else:
            query = f"""SELECT area_id, bucket AS b, {VALUES}, sensors, congested,
                               speed_p50, speed_p85
                        FROM traffic_area_{BY_NAME[step].name}
                        WHERE area_id = ANY(%(a)s) AND bucket >= %(t0)s AND bucket < %(t1)s"""
        return {(r["area_id"], r["b"]): traffic_of(r) for r in await rows(conn, query, p)}

    async def sensor_buckets(
        self, conn: Conn, device_id: str, step: Step, t0: datetime, t1: datetime, tz: str
    ) -> dict[datetime, Traffic]:
        p = {"d": device_id, "t0": t0, "t1": t1, "tz": tz}
        if step == "1d":
            query = f"""SELECT time_bucket('1 day', bucket, %(tz)s) AS b, {SUMS}
                        FROM {self.sensor_relation("1h")}
                        WHERE device_id = %(d)s AND bucket >= %(t0)s AND bucket < %(t1)s
                        GROUP BY 1"""
        else:
            pcts = (
                "NULL AS speed_p50, NULL AS speed_p85" if step == "1m" else "speed_p50, speed_p85"
            )
            query = f"""SELECT bucket AS b, {VALUES}, {pcts} FROM {self.sensor_relation(step)}
                        WHERE device_id = %(d)s AND bucket >= %(t0)s AND bucket < %(t1)s"""
        return {r["b"]: traffic_of(r) for r in await rows(conn, query, p)}

    async def sensor_totals(
        self, conn: Conn, devices: list[str], t0: datetime, t1: datetime
    ) -> dict[str, Traffic]:
        """Per sensor over [t0, t1) (aligned to minutes), for a few sensors (an index probe
        each; for every sensor of an area see ``sensor_speeds``)."""
        if not devices:
            return {}
        got = await _tiered(
            conn,
            self.sensor_relation,
            "device_id",
            VALUES,
            SUMS,
            (t0, t1, TRAFFIC_LEVELS),
            where="device_id = ANY(%(k)s)",
            keys=devices,
        )
        return {r["device_id"]: traffic_of(r) for r in got}

    async def sensor_speeds(
        self, conn: Conn, devices: list[str], t0: datetime, t1: datetime
    ) -> dict[str, tuple[int, float]]:
        """(readings, speed sum) per sensor of ``devices`` over [t0, t1) (aligned to minutes):
        congestion and the slowest sensors of a short window such as the last 15 minutes.
        Every sensor's rows in the window are read by time (the 1-minute rollup's bucket
        index, migration 0009) and those of ``devices`` kept: selecting them in SQL cost one
        index probe per sensor, 60 ms at 2,000 sensors against about 15."""
        if not devices:
            return {}
        got = await _tiered(
            conn,
            self.sensor_relation,
            "device_id",
            "readings, speed_sum",
            "sum(readings)::bigint, sum(speed_sum)",
            (t0, t1, TRAFFIC_LEVELS),
            tuples=True,
        )
        wanted = set(devices)
        return {r[0]: (int(r[1]), float(r[2])) for r in got if r[0] in wanted}

    async def availability_total(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[tuple[str, str], Availability]:
        got = await _tiered(
            conn,
            lambda lv: f"availability_area_{lv}",
            "area_id, kind",
            "devices, slots_expected, slots_up, slots_maintenance",
            AVAILABILITY_SUMS,
            (t0, t1, AVAILABILITY_LEVELS),
            where="area_id = ANY(%(k)s)",
            keys=areas,
        )
        return {(r["area_id"], r["kind"]): availability_of(r) for r in got}

    async def availability_days(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime, tz: str
    ) -> dict[tuple[str, str, date], Availability]:
        query = f"""SELECT area_id, kind,
                           (time_bucket('1 day', bucket, %(tz)s) AT TIME ZONE %(tz)s)::date AS day,
                           {AVAILABILITY_SUMS}
                    FROM availability_area_1h
                    WHERE area_id = ANY(%(a)s) AND bucket >= %(t0)s AND bucket < %(t1)s
                    GROUP BY 1, 2, 3"""
        p = {"a": areas, "t0": t0, "t1": t1, "tz": tz}
        return {
            (r["area_id"], r["kind"], r["day"]): availability_of(r)
            for r in await rows(conn, query, p)
        }

    async def availability_quarters(
        self, conn: Conn, areas: list[str], t0: datetime, t1: datetime
    ) -> dict[tuple[str, str, datetime], Availability]:
        """Per 15 minutes (t0, t1 aligned to 5 minutes): the leaders' trend."""
        query = f"""SELECT area_id, kind, time_bucket('15 minutes', bucket) AS b,
                           {AVAILABILITY_SUMS}
                    FROM availability_area_5m
                    WHERE area_id = ANY(%(a)s) AND bucket >= %(t0)s AND bucket < %(t1)s
                    GROUP BY 1, 2, 3"""
        p = {"a": areas, "t0": t0, "t1": t1}
        return {
            (r["area_id"], r["kind"], r["b"]): availability_of(r)
            for r in await rows(conn, query, p)
        }


async def _tiered(
    conn: Conn,
    relation: Callable[[str], str],
    key: str,
    columns: str,
    sums: str,
    span: tuple[datetime, datetime, tuple[Level, ...]],
    *,
    where: str = "TRUE",
    keys: list[str] | None = None,
    tuples: bool = False,
) -> list[Any]:
    """``sums`` of ``columns`` per ``key`` over [t0, t1), read from the coarsest whole buckets
    that cover it (``tiers``): one UNION ALL over the levels' ``relation(level name)``."""
    t0, t1, levels = span
    pieces = tiers(t0, t1, levels)
    if not pieces:
        return []
    params: dict[str, Any] = {"k": keys}
    parts = []
    for i, (level, a, b) in enumerate(pieces):
        params[f"a{i}"], params[f"b{i}"] = a, b
        parts.append(
            f"SELECT {key}, {columns} FROM {relation(level.name)}"
            f" WHERE {where} AND bucket >= %(a{i})s AND bucket < %(b{i})s"
        )
    query = f"SELECT {key}, {sums} FROM ({' UNION ALL '.join(parts)}) x GROUP BY {key}"
    if not tuples:
        return await rows(conn, query, params)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        return list(await cur.fetchall())
