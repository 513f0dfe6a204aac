"""The leaders' summary, ``GET /api/v1/summary/leader``: the one read model of the ``/leader``
page. Computed by ``ioc.rollups.leader`` — the heavy parts from the rollups, the live parts
(who reports now, open alerts) from their small tables — and only shaped and rounded here.

The response keeps the shape the page was built on (availability, congestion, alerts, areas,
hotspots, trend) and adds, for every headline figure, the same figure at the same time last
week (``kpis``), and how far the rollups had got (``as_of``). Definitions: docs/dashboard.md.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from ioc.api.auth import Viewer
from ioc.api.deps import Conn
from ioc.api.routes_stats import KpiOut, kpi
from ioc.db.seed import load_geography
from ioc.rollups import leader
from ioc.rollups.levels import QUARTER, SLOT
from ioc.rollups.read import Area

router = APIRouter()


# ------------------------------------------------------------------------------ models ---


class Availability(BaseModel):
    devices: int = Field(description="registered, enabled devices of this kind")
    in_maintenance: int = Field(description="of which in a maintenance window now (not counted)")
    counted: int = Field(description="devices - in_maintenance: the denominator of now_pct")
    available_now: int = Field(description="counted devices reporting now (see docs/dashboard.md)")
    now_pct: float | None = Field(description="available_now / counted, %, 1 decimal")
    buckets_expected: int = Field(
        description="device × 5-minute slots today up to availability_through, maintenance out"
    )
    buckets_with_data: int = Field(description="of those, slots with a reading / good picture")
    today_pct: float | None = Field(description="buckets_with_data / buckets_expected, %")


class Congestion(BaseModel):
    index_pct: float | None = Field(description="share of reporting sensors congested, %")
    congested: int
    reporting: int = Field(description="sensors with a reading in the window, not in maintenance")
    window_start: datetime = Field(description="the last 15 rolled-up minutes")
    window_end: datetime


class AlertCounts(BaseModel):
    critical: int = 0
    major: int = 0
    minor: int = 0
    info: int = 0
    total: int = 0


class LeaderKpis(BaseModel):
    """Every headline figure, with the same figure at the same time last week."""

    cameras_now_pct: KpiOut = Field(
        description="cameras.now_pct; last week: camera slots with a good picture in the "
        "5 minutes before availability_through, 7 days earlier"
    )
    cameras_today_pct: KpiOut = Field(description="cameras.today_pct; last week: same hours")
    sensors_now_pct: KpiOut = Field(description="sensors.now_pct; last week as cameras_now_pct")
    sensors_today_pct: KpiOut = Field(description="sensors.today_pct; last week: same hours")
    congestion_pct: KpiOut = Field(description="congestion.index_pct; last week: same window")
    alerts_open: KpiOut = Field(
        description="alerts.total; last week: alerts fired and not yet resolved at this instant"
    )
    alerts_opened_today: KpiOut = Field(description="alerts started today so far")
    vehicles_today: KpiOut = Field(description="vehicles counted today up to traffic_through")
    speed_kmh_today: KpiOut = Field(description="mean speed of today's readings")


class AreaSummary(BaseModel):
    id: str
    name: str
    name_en: str
    cameras: Availability
    sensors: Availability
    congestion: Congestion
    alerts: AlertCounts
    kpis: LeaderKpis


class Hotspot(BaseModel):
    device_id: str
    name: str
    area_id: str
    area_name: str
    area_name_en: str
    speed_kmh: float
    free_flow_kmh: float
    speed_ratio_pct: float = Field(description="mean speed / free-flow speed, %")
    vehicles: int = Field(description="vehicles counted in the window")
    congested: bool
    open_alerts: int
    last_week_speed_kmh: float | None = Field(description="the same window, 7 days earlier")
    last_week_speed_ratio_pct: float | None


class TrendPoint(BaseModel):
    time: datetime = Field(description="start of the 15-minute bucket (UTC)")
    speed_kmh: float | None
    vehicles: int
    congestion_pct: float | None
    sensors_reporting: int = Field(description="sensors with a reading in the bucket")
    sensors_pct: float | None = Field(description="sensor 5-min slots with a reading, %")
    cameras_pct: float | None = Field(description="camera 5-min slots with a good picture, %")
    last_week_speed_kmh: float | None
    last_week_vehicles: int
    last_week_congestion_pct: float | None
    last_week_sensors_pct: float | None
    last_week_cameras_pct: float | None


class Province(BaseModel):
    id: str
    name: str
    name_en: str


class LeaderSummary(BaseModel):
    generated_at: datetime = Field(description="the live figures' time (the database clock)")
    timezone: str
    day_start: datetime = Field(description="local midnight today, as a UTC instant")
    traffic_through: datetime = Field(
        description="traffic figures (today, congestion, hotspots, trend) end here"
    )
    availability_through: datetime = Field(description="today's availability slots end here")
    as_of: datetime = Field(description="the older of the two: every figure is this fresh")
    rollups_stale: bool = Field(
        description="the rollups are further behind than they should be (ioc rollups stopped?)"
    )
    bucket_minutes: int
    trend_bucket_minutes: int
    province: Province
    scope: Province = Field(description="the area the figures are about: province or user's")
    cameras: Availability
    sensors: Availability
    congestion: Congestion
    alerts: AlertCounts
    kpis: LeaderKpis
    areas: list[AreaSummary] = Field(description="the scope's children, sorted by name")
    hotspots: list[Hotspot]
    trend: list[TrendPoint]


# ------------------------------------------------------------------------------- route ---


@functools.lru_cache(maxsize=4)
def _timezone(areas_file: Path) -> str:
    return load_geography(areas_file).timezone or "Asia/Ho_Chi_Minh"


@router.get("/api/v1/summary/leader", response_model=LeaderSummary, tags=["dashboard"])
async def leader_summary(request: Request, conn: Conn, who: Viewer) -> LeaderSummary:
    """How the province is doing now and today, each figure against the same time last
    week: availability, congestion, alerts, hotspots, the 24-hour trend. Read-only; the
    leaders' tablet page shows exactly these numbers. A user of a district or commune gets
    the figures of their area (and its sub-areas) only."""
    settings = request.app.state.settings
    try:
        f = await leader.leader_figures(
            conn,
            tz=_timezone(settings.areas_file),
            scope=None if who.province else who.area_id,
        )
    except LookupError as e:
        raise HTTPException(404, str(e)) from None
    limits: dict[str, float] = settings.freshness_stale_seconds
    limit = timedelta(seconds=float(limits.get("rollups", limits.get("default", 300.0))))
    return shape(f, stale_after=limit)


def shape(f: leader.LeaderFigures, *, stale_after: timedelta) -> LeaderSummary:
    """The response from the figures: rounded, as the page shows them."""
    late = f.generated_at - f.traffic_through > stale_after or (
        f.generated_at - f.availability_through > stale_after + SLOT.width
    )
    s = _area(f.scope)
    return LeaderSummary(
        generated_at=f.generated_at,
        timezone=f.timezone,
        day_start=f.day_start,
        traffic_through=f.traffic_through,
        availability_through=f.availability_through,
        as_of=min(f.traffic_through, f.availability_through),
        rollups_stale=late,
        bucket_minutes=int(SLOT.width.total_seconds() // 60),
        trend_bucket_minutes=int(QUARTER.width.total_seconds() // 60),
        province=_ref(f.root),
        scope=_ref(f.scope.area),
        cameras=s.cameras,
        sensors=s.sensors,
        congestion=s.congestion,
        alerts=s.alerts,
        kpis=s.kpis,
        areas=[_area(a) for a in f.areas],
        hotspots=[_hotspot(h) for h in f.hotspots],
        trend=[_point(p) for p in f.trend],
    )


def _r(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


def _ref(a: Area) -> Province:
    return Province(id=a.id, name=a.name, name_en=a.name_en)


def _availability(d: leader.Devices) -> Availability:
    return Availability(
        devices=d.devices,
        in_maintenance=d.in_maintenance,
        counted=d.counted,
        available_now=d.available_now,
        now_pct=_r(d.now.value),
        buckets_expected=d.today.slots_expected,
        buckets_with_data=d.today.slots_up,
        today_pct=_r(d.today.pct),
    )


def _area(a: leader.AreaLeader) -> AreaSummary:
    c = a.congestion
    return AreaSummary(
        id=a.area.id,
        name=a.area.name,
        name_en=a.area.name_en,
        cameras=_availability(a.cameras),
        sensors=_availability(a.sensors),
        congestion=Congestion(
            index_pct=_r(c.index.value),
            congested=c.congested,
            reporting=c.reporting,
            window_start=c.window_start,
            window_end=c.window_end,
        ),
        alerts=AlertCounts(**a.alerts, total=sum(a.alerts.values())),
        kpis=LeaderKpis(
            cameras_now_pct=kpi(a.cameras.now),
            cameras_today_pct=kpi(a.cameras.today_pct),
            sensors_now_pct=kpi(a.sensors.now),
            sensors_today_pct=kpi(a.sensors.today_pct),
            congestion_pct=kpi(c.index),
            alerts_open=kpi(a.alerts_open, 0),
            alerts_opened_today=kpi(a.alerts_opened, 0),
            vehicles_today=kpi(a.vehicles, 0),
            speed_kmh_today=kpi(a.speed_kmh),
        ),
    )


def _hotspot(h: leader.Hotspot) -> Hotspot:
    return Hotspot(
        device_id=h.device_id,
        name=h.name,
        area_id=h.area.id,
        area_name=h.area.name,
        area_name_en=h.area.name_en,
        speed_kmh=round(h.now.speed_kmh or 0.0, 1),
        free_flow_kmh=round(h.free_flow_kmh, 1),
        speed_ratio_pct=round(h.speed_ratio.value or 0.0, 1),
        vehicles=h.now.volume,
        congested=h.congested,
        open_alerts=h.open_alerts,
        last_week_speed_kmh=_r(h.last_week.speed_kmh),
        last_week_speed_ratio_pct=_r(h.speed_ratio.last_week),
    )


def _point(p: leader.TrendPoint) -> TrendPoint:
    return TrendPoint(
        time=p.time,
        speed_kmh=_r(p.now.speed_kmh),
        vehicles=p.now.volume,
        congestion_pct=_r(p.now.congestion_pct),
        sensors_reporting=p.now.sensors,
        sensors_pct=_r(p.sensors.pct),
        cameras_pct=_r(p.cameras.pct),
        last_week_speed_kmh=_r(p.last_week.speed_kmh),
        last_week_vehicles=p.last_week.volume,
        last_week_congestion_pct=_r(p.last_week.congestion_pct),
        last_week_sensors_pct=_r(p.sensors_last_week.pct),
        last_week_cameras_pct=_r(p.cameras_last_week.pct),
    )
