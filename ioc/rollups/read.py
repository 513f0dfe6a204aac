"""The figures the API serves, each with the same figure at the same time last week, composed
from a ``Source`` (rollups by default; raw.RawSource gives the reference answer).

``leader_figures`` is what the leaders' page shows: today so far, per province and per area
(the children of the root area), in a few dozen rollup rows whatever the fleet size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ioc.rollups.levels import (
    MINUTE,
    QUARTER,
    SLOT,
    WEEK,
    Kpi,
    ceil,
    day_bounds,
    day_start,
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

TREND_SPAN = timedelta(hours=24)
ROLLUPS = RollupSource()


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    name_en: str
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class AreaFigures:
    area: Area
    vehicles: Kpi  # today so far
    speed_kmh: Kpi  # mean of today's readings
    congestion_pct: Kpi  # sensors congested in the last complete 15 minutes, %
    sensors_available_pct: Kpi  # today's 5-minute slots with a reading, maintenance excluded
    cameras_available_pct: Kpi  # today's slots with a good picture, maintenance excluded
    alerts_opened: Kpi  # alerts started today
    sensors: Availability  # today's slot counts behind sensors_available_pct
    cameras: Availability


@dataclass(frozen=True, slots=True)
class TrendPoint:
    time: datetime
    now: Traffic
    last_week: Traffic
    sensors: Availability  # the quarter's sensor slots (complete slots only)
    cameras: Availability
    sensors_last_week: Availability
    cameras_last_week: Availability


@dataclass(frozen=True, slots=True)
class LeaderFigures:
    generated_at: datetime
    timezone: str
    day_start: datetime
    traffic_through: datetime  # traffic figures cover [day_start, traffic_through)
    availability_through: datetime  # availability covers [day_start, availability_through)
    congestion_bucket: datetime  # the 15 minutes congestion_pct is about
    province: AreaFigures
    areas: list[AreaFigures]
    trend: list[TrendPoint]  # the 24 hours to traffic_through, in 15-minute buckets


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
    """The root (the province) and its children, sorted by name: the leader page's areas."""
    roots = [a for a in tree.values() if a.parent_id is None]
    root = roots[0] if roots else None
    groups = [a for a in tree.values() if root and a.parent_id == root.id]
    return root, sorted(groups, key=lambda a: a.name)


async def leader_figures(
    conn: Conn,
    *,
    tz: str,
    now: datetime | None = None,
    source: Source = ROLLUPS,
    through: tuple[datetime, datetime] | None = None,
) -> LeaderFigures:
    """Today so far and the same time last week. ``through`` (traffic, availability) pins the
    ends of the windows, so a second source can be asked exactly the same question."""
    if now is None:
        now = (await rows(conn, "SELECT now() AS now"))[0]["now"]
    if through is None:
        p = await progress(conn)
        t_end = floor(min(now, p.traffic or now), MINUTE.width)
        a_end = floor(min(now, p.availability or now), SLOT.width)
    else:
        t_end, a_end = through
    d0 = day_start(now, tz)
    tree = await areas(conn)
    root, groups = reporting_areas(tree)
    shown = ([root] if root else []) + groups
    ids = [a.id for a in shown]
    q_end = floor(t_end, QUARTER.width)
    cq = q_end - QUARTER.width  # the last complete quarter

    traffic = await source.traffic_total(conn, ids, d0, max(d0, t_end))
    traffic_lw = await source.traffic_total(conn, ids, d0 - WEEK, max(d0, t_end) - WEEK)
    cong = await source.traffic_buckets(conn, ids, "15m", cq, q_end, tz)
    cong_lw = await source.traffic_buckets(conn, ids, "15m", cq - WEEK, q_end - WEEK, tz)
    avail = await source.availability_total(conn, ids, d0, max(d0, a_end))
    avail_lw = await source.availability_total(conn, ids, d0 - WEEK, max(d0, a_end) - WEEK)
    alerts = await _alerts_opened(conn, ids, d0, now)
    alerts_lw = await _alerts_opened(conn, ids, d0 - WEEK, now - WEEK)

    def figures(a: Area) -> AreaFigures:
        t, tl = traffic.get(a.id, Traffic()), traffic_lw.get(a.id, Traffic())
        c, cl = cong.get((a.id, cq), Traffic()), cong_lw.get((a.id, cq - WEEK), Traffic())

        def av(kind: str) -> Kpi:
            now_, lw = avail.get((a.id, kind)), avail_lw.get((a.id, kind))
            return Kpi(now_.pct if now_ else None, lw.pct if lw else None)

        return AreaFigures(
            area=a,
            vehicles=Kpi(float(t.volume), float(tl.volume)),
            speed_kmh=Kpi(t.speed_kmh, tl.speed_kmh),
            congestion_pct=Kpi(c.congestion_pct, cl.congestion_pct),
            sensors_available_pct=av("traffic_sensor"),
            cameras_available_pct=av("camera"),
            alerts_opened=Kpi(float(alerts.get(a.id, 0)), float(alerts_lw.get(a.id, 0))),
            sensors=avail.get((a.id, "traffic_sensor"), Availability()),
            cameras=avail.get((a.id, "camera"), Availability()),
        )

    trend: list[TrendPoint] = []
    if root is not None:
        t0 = q_end - TREND_SPAN
        now_b = await source.traffic_buckets(conn, [root.id], "15m", t0, q_end, tz)
        lw_b = await source.traffic_buckets(conn, [root.id], "15m", t0 - WEEK, q_end - WEEK, tz)
        a1 = max(t0, min(q_end, a_end))  # availability only as far as it is computed
        av_b = await source.availability_quarters(conn, [root.id], t0, a1)
        av_lw = await source.availability_quarters(conn, [root.id], t0 - WEEK, a1 - WEEK)
        b = t0
        while b < q_end:
            trend.append(
                TrendPoint(
                    time=b,
                    now=now_b.get((root.id, b), Traffic()),
                    last_week=lw_b.get((root.id, b - WEEK), Traffic()),
                    sensors=av_b.get((root.id, "traffic_sensor", b), Availability()),
                    cameras=av_b.get((root.id, "camera", b), Availability()),
                    sensors_last_week=av_lw.get(
                        (root.id, "traffic_sensor", b - WEEK), Availability()
                    ),
                    cameras_last_week=av_lw.get((root.id, "camera", b - WEEK), Availability()),
                )
            )
            b += QUARTER.width
    empty = AreaFigures(
        Area("", "", "", None), *(Kpi(None, None),) * 6, Availability(), Availability()
    )
    return LeaderFigures(
        generated_at=now,
        timezone=tz,
        day_start=d0,
        traffic_through=t_end,
        availability_through=a_end,
        congestion_bucket=cq,
        province=figures(root) if root else empty,
        areas=[figures(g) for g in groups],
        trend=trend,
    )


async def _alerts_opened(conn: Conn, ids: list[str], t0: datetime, t1: datetime) -> dict[str, int]:
    """Alerts started in [t0, t1) under each area (alerts are few: read from the table)."""
    got = await rows(
        conn,
        """SELECT c.ancestor_id AS area_id, count(*) AS n
           FROM alerts a JOIN area_closure c ON c.area_id = a.area_id
           WHERE c.ancestor_id = ANY(%(a)s) AND a.started_at >= %(t0)s AND a.started_at < %(t1)s
           GROUP BY 1""",
        {"a": ids, "t0": t0, "t1": t1},
    )
    return {r["area_id"]: int(r["n"]) for r in got}


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
