"""The statistics the API serves, each with the same figure at the same time last week, composed
from a ``Source`` (rollups by default; raw.RawSource gives the reference answer). The leaders'
summary is composed in ``leader.py`` from the same sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ioc.rollups.levels import (
    SLOT,
    WEEK,
    Kpi,
    ceil,
    day_bounds,
    floor,
    pct,
)
from ioc.rollups.source import (
    KINDS,
    Availability,
    Conn,
    RollupSource,
    Source,
    Step,
    Traffic,
    rows,
)

ROLLUPS = RollupSource()


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    name_en: str
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the rollups are: readings received before ``traffic`` are rolled up;
    availability slots before ``availability`` are computed."""

    traffic: datetime | None
    availability: datetime | None


async def progress(conn: Conn) -> Progress:
    got = {r["name"]: r["watermark"] for r in await rows(conn, "SELECT * FROM rollup_state")}
    return Progress(traffic=got.get("traffic"), availability=got.get("availability"))


async def areas(conn: Conn) -> dict[str, Area]:
    return {
        r["id"]: Area(r["id"], r["name"], r["name_en"], r["parent_id"])
        for r in await rows(conn, "SELECT id, name, name_en, parent_id FROM areas ORDER BY id")
    }


def reporting_areas(tree: dict[str, Area]) -> tuple[Area | None, list[Area]]:
    """The root (the province) and its children, sorted by name: the default report areas."""
    roots = [a for a in tree.values() if a.parent_id is None]
    root = roots[0] if roots else None
    groups = [a for a in tree.values() if root and a.parent_id == root.id]
    return root, sorted(groups, key=lambda a: a.name)


# ----------------------------------------------------------------------- area statistics ---


@dataclass(frozen=True, slots=True)
class AreaTotals:
    vehicles: Kpi
    speed_kmh: Kpi
    occupancy_pct: Kpi
    congestion_pct: Kpi  # congested sensor-buckets / reporting sensor-buckets, %
    sensors_available_pct: Kpi
    cameras_available_pct: Kpi


@dataclass(frozen=True, slots=True)
class AreaStats:
    area_id: str
    step: Step
    start: datetime
    end: datetime
    points: list[tuple[datetime, Traffic]]  # buckets in [page_start, page_end) with readings
    totals: AreaTotals  # over [start, end), against [start - 7 days, end - 7 days)


async def area_stats(
    conn: Conn,
    *,
    area_id: str,
    step: Step,
    start: datetime,
    end: datetime,
    tz: str,
    page: tuple[datetime, datetime] | None = None,
    source: Source = ROLLUPS,
) -> AreaStats:
    """Traffic of one area (its subtree) in buckets of ``step`` over [start, end) (aligned to
    the step; local days for "1d"), with totals against the same range last week."""
    p0, p1 = page or (start, end)
    whole = await source.traffic_buckets(conn, [area_id], step, start, end, tz)
    got = (
        whole
        if (p0, p1) == (start, end)
        else await source.traffic_buckets(conn, [area_id], step, p0, p1, tz)
    )
    points = sorted((b, t) for (a, b), t in got.items() if a == area_id)
    whole_lw = await source.traffic_buckets(conn, [area_id], step, start - WEEK, end - WEEK, tz)
    tot = (await source.traffic_total(conn, [area_id], start, end)).get(area_id, Traffic())
    tot_lw = (await source.traffic_total(conn, [area_id], start - WEEK, end - WEEK)).get(
        area_id, Traffic()
    )
    # Availability is counted in 5-minute slots: a "1m" range counts the slots it touches.
    a0, a1 = floor(start, SLOT.width), ceil(end, SLOT.width)
    av = await source.availability_total(conn, [area_id], a0, a1)
    av_lw = await source.availability_total(conn, [area_id], a0 - WEEK, a1 - WEEK)

    def congestion(d: dict[tuple[str, datetime], Traffic]) -> float | None:
        return pct(sum(t.congested for t in d.values()), sum(t.sensors for t in d.values()))

    def avail(kind: str) -> Kpi:
        a, b = av.get((area_id, kind)), av_lw.get((area_id, kind))
        return Kpi(a.pct if a else None, b.pct if b else None)

    return AreaStats(
        area_id=area_id,
        step=step,
        start=p0,
        end=p1,
        points=points,
        totals=AreaTotals(
            vehicles=Kpi(float(tot.volume), float(tot_lw.volume)),
            speed_kmh=Kpi(tot.speed_kmh, tot_lw.speed_kmh),
            occupancy_pct=Kpi(tot.occupancy_pct, tot_lw.occupancy_pct),
            congestion_pct=Kpi(congestion(whole), congestion(whole_lw)),
            sensors_available_pct=avail("traffic_sensor"),
            cameras_available_pct=avail("camera"),
        ),
    )


async def device_series(
    conn: Conn,
    *,
    device_id: str,
    step: Step,
    start: datetime,
    end: datetime,
    tz: str,
    source: Source = ROLLUPS,
) -> list[tuple[datetime, Traffic]]:
    got = await source.sensor_buckets(conn, device_id, step, start, end, tz)
    return sorted(got.items())


# ------------------------------------------------------------------- availability report ---


@dataclass(frozen=True, slots=True)
class AvailabilityRow:
    day: date
    area: Area
    kind: str
    now: Availability
    last_week: Availability | None  # the same weekday a week before


async def availability_report(
    conn: Conn,
    *,
    area_ids: list[str],
    first_day: date,
    last_day: date,
    tz: str,
    kinds: tuple[str, ...] = KINDS,
    source: Source = ROLLUPS,
) -> list[AvailabilityRow]:
    """Availability per area, device kind and local day, first_day..last_day inclusive."""
    t0, _ = day_bounds(first_day, tz)
    _, t1 = day_bounds(last_day, tz)
    tree = await areas(conn)
    got = await source.availability_days(conn, area_ids, t0, t1, tz)
    got_lw = await source.availability_days(conn, area_ids, t0 - WEEK, t1 - WEEK, tz)
    out = []
    day = first_day
    while day <= last_day:
        for area_id in area_ids:
            for kind in kinds:
                now = got.get((area_id, kind, day))
                if now is None or area_id not in tree:
                    continue
                out.append(
                    AvailabilityRow(
                        day=day,
                        area=tree[area_id],
                        kind=kind,
                        now=now,
                        last_week=got_lw.get((area_id, kind, day - timedelta(days=7))),
                    )
                )
        day += timedelta(days=1)
    return out


def as_dict(x: Any) -> Any:
    """For tests and the benchmark: a comparable plain structure of any figure."""
    from dataclasses import asdict, is_dataclass

    return asdict(x) if is_dataclass(x) and not isinstance(x, type) else x
