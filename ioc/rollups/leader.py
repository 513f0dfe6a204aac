"""The leaders' summary (``GET /api/v1/summary/leader``, the ``/leader`` page): how an area —
the province, or a user's own district — is doing now and today, every figure against the
same time last week.

Heavy parts come from a ``Source``: the rollups (``raw.RawSource`` computes the same from the
raw hypertables, the reference for tests and ``ioc bench queries``): today's traffic and
availability, the last 15 minutes per sensor (congestion, hotspots), the 24-hour trend. Each
reads a few dozen rows per area, or one per sensor and minute of the last 15, whatever the
months of history. Live parts are read from small tables as they are: who reports now
(``device_state``, one row per device), maintenance windows, alerts.

Rollups lag real time by about a tick of ``ioc rollups``: ``traffic_through`` and
``availability_through`` say how far they had got, and every rolled-up window ends there.
Definitions: docs/dashboard.md.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from psycopg.rows import tuple_row

from ioc.domain.device_status import traffic_sensor_reporting
from ioc.rollups.levels import (
    CONGESTED_BELOW,
    DEFAULT_FREE_FLOW_KMH,
    MINUTE,
    QUARTER,
    SLOT,
    WEEK,
    Kpi,
    day_start,
    floor,
    pct,
    ratio,
)
from ioc.rollups.licence import uses_caggs
from ioc.rollups.read import Area, areas, progress
from ioc.rollups.source import Availability, Conn, RollupSource, Source, Traffic, rows

TREND_SPAN = timedelta(hours=24)
RECENT = timedelta(minutes=15)  # congestion and hotspots: the last 15 rolled-up minutes
CAMERA_FRESH = timedelta(minutes=5)  # a camera verdict older than this does not count as "up"
ACTIVE = ("firing", "acknowledged", "flapping")  # alerts a person must see
SEVERITIES = ("critical", "major", "minor", "info")
HOTSPOTS = 5


@dataclass(frozen=True, slots=True)
class Devices:
    """One kind of device (sensors or cameras) in one area."""

    devices: int  # enabled, registered
    in_maintenance: int  # in a maintenance window now (not counted)
    available_now: int  # counted and reporting now (live, device_state)
    today: Availability  # today's 5-minute slots so far (rollups)
    today_last_week: Availability  # the same slots of the same day last week
    slot_last_week: Availability  # "now" a week ago: the last rolled-up slot, 7 days earlier

    @property
    def counted(self) -> int:
        return self.devices - self.in_maintenance

    @property
    def now(self) -> Kpi:
        return Kpi(pct(self.available_now, self.counted), self.slot_last_week.pct)

    @property
    def today_pct(self) -> Kpi:
        return Kpi(self.today.pct, self.today_last_week.pct)


@dataclass(frozen=True, slots=True)
class Congestion:
    """Sensors with readings in the window (not in maintenance), and how many were congested:
    mean speed below half their free-flow speed. The same window a week earlier beside."""

    window_start: datetime
    window_end: datetime
    reporting: int
    congested: int
    reporting_last_week: int
    congested_last_week: int

    @property
    def index(self) -> Kpi:
        return Kpi(
            pct(self.congested, self.reporting),
            pct(self.congested_last_week, self.reporting_last_week),
        )


@dataclass(frozen=True, slots=True)
class AreaLeader:
    area: Area
    sensors: Devices
    cameras: Devices
    congestion: Congestion
    alerts: dict[str, int]  # open now (firing, acknowledged, flapping), by severity
    alerts_open_last_week: int  # fired and not yet resolved at the same instant last week
    alerts_opened: Kpi  # alerts started today so far, against the same hours last week
    traffic: Traffic  # today so far (rollups)
    traffic_last_week: Traffic

    @property
    def alerts_open(self) -> Kpi:
        return Kpi(float(sum(self.alerts.values())), float(self.alerts_open_last_week))

    @property
    def vehicles(self) -> Kpi:
        """Vehicles today; last week None when nothing was read then (no sensors yet)."""
        lw = self.traffic_last_week
        return Kpi(float(self.traffic.volume), float(lw.volume) if lw.readings else None)

    @property
    def speed_kmh(self) -> Kpi:
        return Kpi(self.traffic.speed_kmh, self.traffic_last_week.speed_kmh)


@dataclass(frozen=True, slots=True)
class Hotspot:
    device_id: str
    name: str
    area: Area
    free_flow_kmh: float
    now: Traffic  # the window's readings
    last_week: Traffic  # the same window a week earlier (empty: no readings then)
    open_alerts: int

    @property
    def speed_ratio(self) -> Kpi:
        """Mean speed / free-flow speed, %."""
        return Kpi(
            pct(self.now.speed_kmh, self.free_flow_kmh),
            pct(self.last_week.speed_kmh, self.free_flow_kmh),
        )

    @property
    def congested(self) -> bool:
        r = ratio(self.now.speed_kmh, self.free_flow_kmh)
        return r is not None and r < CONGESTED_BELOW


@dataclass(frozen=True, slots=True)
class TrendPoint:
    time: datetime  # start of the 15-minute bucket
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
    traffic_through: datetime  # traffic figures cover readings up to here
    availability_through: datetime  # availability covers the 5-minute slots before this
    root: Area  # the province
    scope: AreaLeader  # the area the figures are about: the province, or the user's area
    areas: list[AreaLeader]  # the scope's children, sorted by name (no children: the scope)
    hotspots: list[Hotspot]  # the slowest sensors of the window, against free flow
    trend: list[TrendPoint]  # 24 h of complete quarters


class _Tree:
    def __init__(self, tree: dict[str, Area], scope: Area) -> None:
        self.tree = tree
        self.scope = scope
        kids = sorted((a for a in tree.values() if a.parent_id == scope.id), key=lambda a: a.name)
        self.groups = kids or [scope]
        self._group_ids = {g.id for g in self.groups}

    def group_of(self, area_id: str) -> str | None:
        """The group (a child of the scope, or the scope itself when it has none) an area is
        under; None for the scope itself when it has children."""
        node: str | None = area_id
        seen: set[str] = set()
        while node is not None and node in self.tree and node not in seen:
            if node in self._group_ids:
                return node
            seen.add(node)
            node = self.tree[node].parent_id
        return None


async def leader_figures(
    conn: Conn,
    *,
    tz: str,
    scope: str | None = None,
    now: datetime | None = None,
    source: Source | None = None,
    through: tuple[datetime, datetime] | None = None,
) -> LeaderFigures:
    """The summary of ``scope`` (an area id; default: the root). ``source`` defaults to the
    rollups (the continuous aggregates' names on a 'timescale' licence). ``now`` and
    ``through`` (traffic, availability) pin the clock and the ends of the rolled-up windows,
    so a second source can be asked exactly the same question."""
    if source is None:
        source = RollupSource(continuous_aggregates=await uses_caggs(conn))
    if now is None:
        now = (await rows(conn, "SELECT now() AS now"))[0]["now"]
    d0 = day_start(now, tz)
    if through is None:
        p = await progress(conn)  # never rolled up: nothing of today is covered yet
        t_end = floor(min(now, p.traffic or d0), MINUTE.width)
        a_end = floor(min(now, p.availability or d0), SLOT.width)
    else:
        t_end, a_end = through
    lw_now = now - WEEK

    tree = await areas(conn)
    roots = [a for a in tree.values() if a.parent_id is None]
    root = roots[0] if roots else Area("", "", "", None)
    top = tree.get(scope) if scope else root
    if top is None:
        raise LookupError(f"area {scope} does not exist")
    groups = _Tree(tree, top)
    ids = list(dict.fromkeys([top.id, *(g.id for g in groups.groups)]))

    fleet = await _fleet(conn, top.id)
    maint = await _maintenance(conn, top.id, now, lw_now)
    sensor_ids = [d.id for d in fleet if d.kind == "traffic_sensor"]
    w0, w1 = t_end - RECENT, t_end
    recent = await source.sensor_speeds(conn, sensor_ids, w0, w1)
    recent_lw = await source.sensor_speeds(conn, sensor_ids, w0 - WEEK, w1 - WEEK)
    t1 = max(d0, t_end)
    traffic = await source.traffic_total(conn, ids, d0, t1)
    traffic_lw = await source.traffic_total(conn, ids, d0 - WEEK, t1 - WEEK)
    a1 = max(d0, a_end)
    avail = await source.availability_total(conn, ids, d0, a1)
    avail_lw = await source.availability_total(conn, ids, d0 - WEEK, a1 - WEEK)
    slot_lw = await source.availability_total(conn, ids, a_end - SLOT.width - WEEK, a_end - WEEK)
    open_now = await rows(
        conn,
        """SELECT a.device_id, a.area_id, a.severity FROM alerts a
           JOIN area_closure c ON c.area_id = a.area_id AND c.ancestor_id = %(s)s
           WHERE a.status = ANY(%(active)s)""",
        {"s": top.id, "active": list(ACTIVE)},
    )
    history = await _alert_history(conn, ids, d0, now)

    # Live counts and the window's congestion, per area the device is counted under (the
    # scope, and the child of the scope it is in). One pass over the fleet, plain counters:
    # at 2,000 sensors this loop is a large part of the summary's time.
    n: dict[str, _Counts] = defaultdict(_Counts)
    under: dict[str, list[_Counts]] = {}
    slowest: list[tuple[float, str, Any]] = []
    for d in fleet:
        counts = under.get(d.area_id)
        if counts is None:
            g = groups.group_of(d.area_id)
            counts = under[d.area_id] = [n[top.id]] + ([n[g]] if g and g != top.id else [])
        away, away_lw = maint.get(d.id, (False, False))
        up = not away and d.up(now)
        if d.kind != "traffic_sensor":
            for c in counts:
                c.cameras += 1
                c.cameras_maint += away
                c.cameras_up += up
            continue
        rec = None if away else recent.get(d.id)
        reporting, congested = _congestion(rec, d.free_flow)
        reporting_lw, congested_lw = _congestion(
            None if away_lw else recent_lw.get(d.id), d.free_flow
        )
        for c in counts:
            c.sensors += 1
            c.sensors_maint += away
            c.sensors_up += up
            c.reporting += reporting
            c.congested += congested
            c.reporting_lw += reporting_lw
            c.congested_lw += congested_lw
        if rec is not None and reporting:
            slowest.append((rec[1] / rec[0] / d.free_flow, d.id, d))
    # The slowest sensors against their free flow; their full figures for the window.
    slow = heapq.nsmallest(HOTSPOTS, slowest)  # (ratio, id): ids are unique
    slow_ids = [x[1] for x in slow]
    hot_now = await source.sensor_totals(conn, slow_ids, w0, w1)
    hot_lw = await source.sensor_totals(conn, slow_ids, w0 - WEEK, w1 - WEEK)
    per_device = Counter(a["device_id"] for a in open_now)
    hot = [
        Hotspot(
            device_id=d.id,
            name=d.name,
            area=tree.get(d.area_id, Area(d.area_id, d.area_id, d.area_id, None)),
            free_flow_kmh=d.free_flow,
            now=hot_now.get(d.id, Traffic()),
            last_week=hot_lw.get(d.id, Traffic()),
            open_alerts=per_device[d.id],
        )
        for _, _, d in slow
    ]
    by_sev: dict[str, Counter[str]] = defaultdict(Counter)
    for a in open_now:
        for k in {top.id, groups.group_of(a["area_id"]) or top.id}:
            by_sev[k][a["severity"]] += 1

    def devices(area_id: str, kind: str) -> Devices:
        c = n[area_id]
        sensors = kind == "traffic_sensor"
        return Devices(
            devices=c.sensors if sensors else c.cameras,
            in_maintenance=c.sensors_maint if sensors else c.cameras_maint,
            available_now=c.sensors_up if sensors else c.cameras_up,
            today=avail.get((area_id, kind), Availability()),
            today_last_week=avail_lw.get((area_id, kind), Availability()),
            slot_last_week=slot_lw.get((area_id, kind), Availability()),
        )

    def figures(a: Area) -> AreaLeader:
        c, h = n[a.id], history.get(a.id, Counter())
        return AreaLeader(
            area=a,
            sensors=devices(a.id, "traffic_sensor"),
            cameras=devices(a.id, "camera"),
            congestion=Congestion(
                window_start=w0,
                window_end=w1,
                reporting=c.reporting,
                congested=c.congested,
                reporting_last_week=c.reporting_lw,
                congested_last_week=c.congested_lw,
            ),
            alerts={s: by_sev[a.id][s] for s in SEVERITIES},
            alerts_open_last_week=h["open_lw"],
            alerts_opened=Kpi(float(h["opened"]), float(h["opened_lw"])),
            traffic=traffic.get(a.id, Traffic()),
            traffic_last_week=traffic_lw.get(a.id, Traffic()),
        )

    return LeaderFigures(
        generated_at=now,
        timezone=tz,
        day_start=d0,
        traffic_through=t_end,
        availability_through=a_end,
        root=root,
        scope=figures(top),
        areas=[figures(g) for g in groups.groups],
        hotspots=hot,
        trend=await _trend(conn, source, top.id, t_end, a_end, tz),
    )


def _congestion(speeds: tuple[int, float] | None, free_flow: float) -> tuple[bool, bool]:
    """(reporting in the window, congested: mean speed below the threshold share of free
    flow) from a sensor's (readings, speed sum); (False, False) without readings."""
    if speeds is None or not speeds[0]:
        return False, False
    readings, speed_sum = speeds
    return True, speed_sum / readings < CONGESTED_BELOW * free_flow


@dataclass(slots=True)
class _Counts:
    """Live counts of one area (see ``Devices``, ``Congestion``)."""

    sensors: int = 0
    sensors_maint: int = 0
    sensors_up: int = 0
    cameras: int = 0
    cameras_maint: int = 0
    cameras_up: int = 0
    reporting: int = 0
    congested: int = 0
    reporting_lw: int = 0
    congested_lw: int = 0


class _Device(NamedTuple):
    """An enabled sensor or camera, with the parts of its live state that say whether it
    works now (whole ``last`` documents cost ~10 ms to decode at 2,000 sensors)."""

    id: str
    kind: str
    name: str
    area_id: str
    free_flow: float
    last_seen: datetime | None
    online: bool | None
    updated_at: datetime | None
    status: str | None  # a camera's latest verdict
    interval_s: float | None  # a sensor's reporting interval

    def up(self, now: datetime) -> bool:
        """Sensor: reporting (the map's rule: not offline, heard within its silence limit;
        stuck values are still reports). Camera: its latest verdict is a good picture, at
        most CAMERA_FRESH old."""
        if self.kind == "camera":
            return (
                self.status == "ok"
                and self.updated_at is not None
                and now - self.updated_at <= CAMERA_FRESH
            )
        return traffic_sensor_reporting(
            now=now, last_seen=self.last_seen, online=self.online, interval_s=self.interval_s
        )


async def _fleet(conn: Conn, scope: str) -> list[_Device]:
    """Enabled sensors and cameras under ``scope``, with their live state (one row each)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(
            """SELECT d.id, d.kind, d.name, d.area_id,
                      coalesce(nullif((d.metadata->>'free_flow_kmh')::float8, 0), %(ff)s)
                          AS free_flow,
                      s.last_seen, s.online, s.updated_at, s.last->>'status' AS status,
                      CASE jsonb_typeof(s.last->'interval_s')
                           WHEN 'number' THEN (s.last->>'interval_s')::float8 END AS interval_s
               FROM devices d
               JOIN area_closure c ON c.area_id = d.area_id AND c.ancestor_id = %(s)s
               LEFT JOIN device_state s ON s.device_id = d.id
               WHERE d.enabled AND d.kind IN ('traffic_sensor', 'camera')""",
            {"ff": DEFAULT_FREE_FLOW_KMH, "s": scope},
        )
        return [_Device._make(r) for r in await cur.fetchall()]


async def _maintenance(
    conn: Conn, scope: str, now: datetime, lw: datetime
) -> dict[str, tuple[bool, bool]]:
    """Device id -> (in a maintenance window now, at the same instant last week). An area's
    window covers its whole subtree."""
    got = await rows(
        conn,
        """WITH m AS (
               SELECT device_id, area_id, starts_at,
                      least(ends_at, coalesce(cancelled_at, ends_at)) AS ends_at
               FROM maintenance
               WHERE starts_at <= %(now)s
                 AND least(ends_at, coalesce(cancelled_at, ends_at)) > %(lw)s),
           w AS (
               SELECT m.device_id AS id, m.starts_at, m.ends_at FROM m
               WHERE m.device_id IS NOT NULL
               UNION ALL
               SELECT d.id, m.starts_at, m.ends_at
               FROM m JOIN area_closure c ON c.ancestor_id = m.area_id
               JOIN devices d ON d.area_id = c.area_id
               WHERE m.device_id IS NULL)
           SELECT w.id, bool_or(w.starts_at <= %(now)s AND w.ends_at > %(now)s) AS now,
                  bool_or(w.starts_at <= %(lw)s AND w.ends_at > %(lw)s) AS lw
           FROM w JOIN devices d ON d.id = w.id
           JOIN area_closure c ON c.area_id = d.area_id AND c.ancestor_id = %(s)s
           GROUP BY w.id""",
        {"now": now, "lw": lw, "s": scope},
    )
    return {r["id"]: (bool(r["now"]), bool(r["lw"])) for r in got}


async def _alert_history(
    conn: Conn, ids: list[str], d0: datetime, now: datetime
) -> dict[str, Counter[str]]:
    """Per area: alerts started today so far (``opened``) and in the same hours last week
    (``opened_lw``); alerts open at this instant last week (``open_lw``: fired, not yet
    resolved — an alert row keeps no history of being suppressed)."""
    got = await rows(
        conn,
        """SELECT c.ancestor_id AS area_id,
                  count(*) FILTER (WHERE a.started_at >= %(d0)s AND a.started_at < %(now)s)
                      AS opened,
                  count(*) FILTER (WHERE a.started_at >= %(d0)s - interval '7 days'
                                     AND a.started_at < %(lw)s) AS opened_lw,
                  count(*) FILTER (WHERE a.fired_at <= %(lw)s
                                     AND (a.resolved_at IS NULL OR a.resolved_at > %(lw)s))
                      AS open_lw
           FROM alerts a JOIN area_closure c ON c.area_id = a.area_id
           WHERE c.ancestor_id = ANY(%(a)s)
             AND (a.started_at >= %(d0)s - interval '7 days' OR a.resolved_at IS NULL
                  OR a.resolved_at > %(lw)s)
           GROUP BY 1""",
        {"a": ids, "d0": d0, "now": now, "lw": now - WEEK},
    )
    return {
        r["area_id"]: Counter({k: int(r[k]) for k in ("opened", "opened_lw", "open_lw")})
        for r in got
    }


async def _trend(
    conn: Conn, source: Source, area: str, t_end: datetime, a_end: datetime, tz: str
) -> list[TrendPoint]:
    """The 24 hours of complete quarters before ``t_end``, with last week's beside."""
    q_end = floor(t_end, QUARTER.width)
    t0 = q_end - TREND_SPAN
    now_b = await source.traffic_buckets(conn, [area], "15m", t0, q_end, tz)
    lw_b = await source.traffic_buckets(conn, [area], "15m", t0 - WEEK, q_end - WEEK, tz)
    a1 = max(t0, min(q_end, a_end))  # availability only as far as it is computed
    av = await source.availability_quarters(conn, [area], t0, a1)
    av_lw = await source.availability_quarters(conn, [area], t0 - WEEK, a1 - WEEK)
    out, b = [], t0
    while b < q_end:
        out.append(
            TrendPoint(
                time=b,
                now=now_b.get((area, b), Traffic()),
                last_week=lw_b.get((area, b - WEEK), Traffic()),
                sensors=av.get((area, "traffic_sensor", b), Availability()),
                cameras=av.get((area, "camera", b), Availability()),
                sensors_last_week=av_lw.get((area, "traffic_sensor", b - WEEK), Availability()),
                cameras_last_week=av_lw.get((area, "camera", b - WEEK), Availability()),
            )
        )
        b += QUARTER.width
    return out
