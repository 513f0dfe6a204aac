"""Statistics from the rollups: an area's traffic over a range, one sensor's series,
availability by area and day (JSON or CSV). Every headline figure comes with the same figure
at the same time last week. Definitions: docs/rollups.md. The leaders' summary, from the same
rollups, is ``GET /api/v1/summary/leader`` (routes_leader.py).

Time series are paginated by time: a page holds at most ``limit`` buckets and ``next_cursor``
is the start of the next page (pass it back as ``cursor``). Ranges are aligned outward to the
step (local days for "1d"); the response says which range it covers.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from ioc.api.auth import Viewer, require_area, require_device
from ioc.api.deps import Conn
from ioc.api.schemas import EARLIEST, LATEST, PlainPath, invalid
from ioc.db.seed import load_geography
from ioc.rollups import read
from ioc.rollups.levels import Kpi, advance, step_end, step_start
from ioc.rollups.licence import uses_caggs
from ioc.rollups.source import KINDS, RollupSource, Step, Traffic, rows
from ioc.security.users import Principal

router = APIRouter(prefix="/api/v1/stats", tags=["statistics"])

# The longest range each step may cover in one request (a page is at most `limit` buckets).
MAX_SPAN: dict[str, timedelta] = {
    "1m": timedelta(days=2),
    "15m": timedelta(days=31),
    "1h": timedelta(days=366),
    "1d": timedelta(days=731),
}
MAX_LIMIT = 1000
MAX_REPORT_DAYS = 366
Kind = Literal["traffic_sensor", "camera"]


# ------------------------------------------------------------------------------ models ---


class KpiOut(BaseModel):
    value: float | None
    last_week: float | None = Field(description="the same figure, same time, 7 days earlier")
    change: float | None = Field(description="value - last_week")
    change_pct: float | None = Field(description="(value - last_week) / last_week, %")


class AreaRef(BaseModel):
    id: str
    name: str
    name_en: str


class TrafficPoint(BaseModel):
    time: datetime = Field(description="start of the bucket (UTC)")
    readings: int
    vehicles: int
    speed_kmh: float | None
    speed_min_kmh: float | None
    speed_max_kmh: float | None
    speed_p50_kmh: float | None = Field(
        description="median speed; 15m and 1h buckets, once the bucket has closed"
    )
    speed_p85_kmh: float | None = Field(description="85th percentile speed (as speed_p50_kmh)")
    occupancy_pct: float | None
    sensors: int | None = Field(description="sensors reporting (sensor-hours for 1d); areas")
    congestion_pct: float | None = Field(description="of those, congested, %; areas only")


class AreaTotals(BaseModel):
    vehicles: KpiOut
    speed_kmh: KpiOut
    occupancy_pct: KpiOut
    congestion_pct: KpiOut = Field(description="congested sensor-buckets / reporting ones, %")
    sensors_available_pct: KpiOut
    cameras_available_pct: KpiOut


class Page(BaseModel):
    step: Step
    timezone: str
    start: datetime = Field(description="the whole range, aligned to the step")
    end: datetime
    page_start: datetime
    page_end: datetime
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: done")


class AreaTrafficPage(Page):
    area: AreaRef
    items: list[TrafficPoint] = Field(description="buckets with readings (gaps are absent)")
    totals: AreaTotals = Field(description="over the whole range, against the range a week back")


class DeviceTrafficPage(Page):
    device_id: str
    items: list[TrafficPoint]


class AvailabilityRowOut(BaseModel):
    day: date = Field(description="local calendar day")
    area_id: str
    area_name: str
    area_name_en: str
    kind: Kind
    devices: int
    slots_expected: int = Field(description="device × 5-minute slots outside maintenance")
    slots_up: int
    slots_maintenance: int
    available_pct: float | None
    last_week_pct: float | None = Field(description="the same weekday a week before")


class AvailabilityPage(BaseModel):
    timezone: str
    first_day: date
    last_day: date
    items: list[AvailabilityRowOut]
    next_cursor: str | None = Field(description="the next page's first day; null: done")


# ------------------------------------------------------------------------------ helpers ---


@functools.lru_cache(maxsize=4)
def _tz_of(areas_file: Path) -> str:
    return load_geography(areas_file).timezone or "Asia/Ho_Chi_Minh"


def _tz(request: Request) -> str:
    return _tz_of(request.app.state.settings.areas_file)


def _r(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


def kpi(k: Kpi, digits: int = 1) -> KpiOut:
    return KpiOut(
        value=_r(k.value, digits),
        last_week=_r(k.last_week, digits),
        change=_r(k.change, digits),
        change_pct=_r(k.change_pct, 1),
    )


def _area(a: read.Area) -> AreaRef:
    return AreaRef(id=a.id, name=a.name, name_en=a.name_en)


def _point(t: datetime, x: Traffic, *, area: bool) -> TrafficPoint:
    return TrafficPoint(
        time=t,
        readings=x.readings,
        vehicles=x.volume,
        speed_kmh=_r(x.speed_kmh),
        speed_min_kmh=_r(x.speed_min),
        speed_max_kmh=_r(x.speed_max),
        speed_p50_kmh=_r(x.speed_p50),
        speed_p85_kmh=_r(x.speed_p85),
        occupancy_pct=_r(x.occupancy_pct),
        sensors=x.sensors if area else None,
        congestion_pct=_r(x.congestion_pct) if area else None,
    )


def _window(
    start: datetime, end: datetime, step: Step, tz: str, limit: int, cursor: str | None
) -> tuple[datetime, datetime, datetime, datetime, str | None]:
    """Align [start, end) to the step, check its size, and cut the page the cursor points at.
    Returns (start, end, page_start, page_end, next_cursor)."""
    for name, t in (("start", start), ("end", end)):
        if not EARLIEST <= t <= LATEST:
            raise invalid("query", name, f"{name} must lie in {EARLIEST:%Y}..{LATEST:%Y}")
    if end <= start:
        raise invalid("query", "end", "end must be after start")
    s, e = step_start(start, step, tz), step_end(end, step, tz)
    if e - s > MAX_SPAN[step]:
        raise invalid(
            "query",
            "end",
            f"a {step} series covers at most {MAX_SPAN[step].days} days; "
            "narrow the range or use a coarser step",
        )
    p0 = s
    if cursor is not None:
        try:
            p0 = datetime.fromisoformat(cursor)
        except ValueError:
            raise invalid(
                "query", "cursor", "cursor is not a time: pass back next_cursor"
            ) from None
        if p0.tzinfo is None or not s <= p0 < e or step_start(p0, step, tz) != p0:
            raise invalid(
                "query", "cursor", "cursor does not belong to this range: pass next_cursor"
            )
    p1 = min(e, advance(p0, step, limit, tz))
    return s, e, p0, p1, (p1.isoformat() if p1 < e else None)


async def _known_area(conn: Conn, area_id: str) -> read.Area:
    tree = await read.areas(conn)
    if area_id not in tree:
        raise HTTPException(404, f"area {area_id} does not exist")
    return tree[area_id]


Start = Annotated[
    AwareDatetime, Query(description="range start, with a UTC offset (years 2000..2100)")
]
End = Annotated[AwareDatetime, Query(description="range end (exclusive), with a UTC offset")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="buckets per page")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]


# ------------------------------------------------------------------------------- routes ---


async def _area_page(
    request: Request,
    conn: Conn,
    area_id: str,
    start: datetime,
    end: datetime,
    step: Step,
    limit: int,
    cursor: str | None,
) -> AreaTrafficPage:
    tz = _tz(request)
    area = await _known_area(conn, area_id)
    s, e, p0, p1, nxt = _window(start, end, step, tz, limit, cursor)
    st = await read.area_stats(
        conn, area_id=area_id, step=step, start=s, end=e, tz=tz, page=(p0, p1)
    )
    t = st.totals
    return AreaTrafficPage(
        step=step,
        timezone=tz,
        start=s,
        end=e,
        page_start=p0,
        page_end=p1,
        next_cursor=nxt,
        area=_area(area),
        items=[_point(b, x, area=True) for b, x in st.points],
        totals=AreaTotals(
            vehicles=kpi(t.vehicles, 0),
            speed_kmh=kpi(t.speed_kmh),
            occupancy_pct=kpi(t.occupancy_pct),
            congestion_pct=kpi(t.congestion_pct),
            sensors_available_pct=kpi(t.sensors_available_pct),
            cameras_available_pct=kpi(t.cameras_available_pct),
        ),
    )


@router.get("/areas/{area_id}/traffic", response_model=AreaTrafficPage)
async def area_traffic(
    request: Request,
    conn: Conn,
    who: Viewer,
    area_id: str,
    start: Start,
    end: End,
    step: Step = "1h",
    limit: Limit = 500,
    cursor: Cursor = None,
) -> AreaTrafficPage:
    """An area's traffic (its whole subtree) over [start, end) in buckets of ``step``, with
    totals for the whole range against the same range a week earlier."""
    require_area(who, area_id, f"area {area_id}")
    return await _area_page(request, conn, area_id, start, end, step, limit, cursor)


@router.get(
    "/areas/{area_id}/traffic.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def area_traffic_csv(
    request: Request,
    conn: Conn,
    who: Viewer,
    area_id: str,
    start: Start,
    end: End,
    step: Step = "1h",
) -> Response:
    """The same series as CSV, every bucket of the range in one file."""
    require_area(who, area_id, f"area {area_id}")
    page = await _area_page(request, conn, area_id, start, end, step, MAX_LIMIT * 100, None)
    fields = list(TrafficPoint.model_fields)
    return _csv(
        f"traffic-{area_id}-{page.start:%Y%m%dT%H%M}-{step}.csv",
        fields,
        (p.model_dump(mode="json") for p in page.items),
    )


@router.get("/devices/{device_id}/traffic", response_model=DeviceTrafficPage)
async def device_traffic(
    request: Request,
    conn: Conn,
    who: Viewer,
    device_id: PlainPath,
    start: Start,
    end: End,
    step: Step = "15m",
    limit: Limit = 500,
    cursor: Cursor = None,
) -> DeviceTrafficPage:
    """One traffic sensor's series over [start, end) in buckets of ``step``."""
    await require_device(conn, who, device_id)
    found = await rows(conn, "SELECT kind FROM devices WHERE id = %(d)s", {"d": device_id})
    if not found:
        raise HTTPException(404, f"device {device_id} does not exist")
    if found[0]["kind"] != "traffic_sensor":
        raise invalid(
            "path",
            "device_id",
            f"device {device_id} is a {found[0]['kind']}: only traffic sensors are rolled up",
        )
    tz = _tz(request)
    s, e, p0, p1, nxt = _window(start, end, step, tz, limit, cursor)
    source = RollupSource(continuous_aggregates=await uses_caggs(conn))
    points = await read.device_series(
        conn, device_id=device_id, step=step, start=p0, end=p1, tz=tz, source=source
    )
    return DeviceTrafficPage(
        step=step,
        timezone=tz,
        start=s,
        end=e,
        page_start=p0,
        page_end=p1,
        next_cursor=nxt,
        device_id=device_id,
        items=[_point(b, x, area=False) for b, x in points],
    )


async def _availability(
    request: Request,
    conn: Conn,
    first_day: date,
    last_day: date,
    area_id: list[str] | None,
    kind: Kind | None,
    limit: int,
    cursor: str | None,
) -> AvailabilityPage:
    tz = _tz(request)
    for name, d in (("first_day", first_day), ("last_day", last_day)):
        if not EARLIEST.date() <= d < LATEST.date():
            raise invalid("query", name, f"{name} must lie in {EARLIEST:%Y}..{LATEST:%Y}")
    if last_day < first_day:
        raise invalid("query", "last_day", "last_day must not be before first_day")
    if (last_day - first_day).days >= MAX_REPORT_DAYS:
        raise invalid("query", "last_day", f"a report covers at most {MAX_REPORT_DAYS} days")
    tree = await read.areas(conn)
    if area_id:
        unknown = [a for a in area_id if a not in tree]
        if unknown:
            raise HTTPException(404, f"area {unknown[0]} does not exist")
        ids = list(dict.fromkeys(area_id))
    else:
        root, groups = read.reporting_areas(tree)
        ids = [a.id for a in ([root] if root else []) + groups]
    kinds = (kind,) if kind else KINDS
    d0 = first_day
    if cursor is not None:
        try:
            d0 = date.fromisoformat(cursor)
        except ValueError:
            raise invalid("query", "cursor", "cursor is not a day: pass back next_cursor") from None
        if not first_day <= d0 <= last_day:
            raise invalid(
                "query", "cursor", "cursor does not belong to this range: pass next_cursor"
            )
    per_day = max(1, len(ids) * len(kinds))
    d1 = min(last_day, d0 + timedelta(days=max(1, limit // per_day) - 1))
    got = await read.availability_report(
        conn, area_ids=ids, first_day=d0, last_day=d1, tz=tz, kinds=kinds
    )
    return AvailabilityPage(
        timezone=tz,
        first_day=first_day,
        last_day=last_day,
        next_cursor=(d1 + timedelta(days=1)).isoformat() if d1 < last_day else None,
        items=[
            AvailabilityRowOut(
                day=r.day,
                area_id=r.area.id,
                area_name=r.area.name,
                area_name_en=r.area.name_en,
                kind=r.kind,  # type: ignore[arg-type]
                devices=r.now.devices,
                slots_expected=r.now.slots_expected,
                slots_up=r.now.slots_up,
                slots_maintenance=r.now.slots_maintenance,
                available_pct=_r(r.now.pct, 2),
                last_week_pct=_r(r.last_week.pct, 2) if r.last_week else None,
            )
            for r in got
        ],
    )


AreaIds = Annotated[
    list[str] | None, Query(description="areas (repeatable); default: the province and its areas")
]
Days = Annotated[date, Query(description="local calendar day (years 2000..2099)")]


@router.get("/availability", response_model=AvailabilityPage)
async def availability(
    request: Request,
    conn: Conn,
    who: Viewer,
    first_day: Days,
    last_day: Days,
    area_id: AreaIds = None,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="rows per page")] = 500,
    cursor: Cursor = None,
) -> AvailabilityPage:
    """Availability of sensors and cameras per area and local day: the share of 5-minute
    slots with data, maintenance windows excluded, against the same weekday a week before."""
    area_id = _scoped(who, area_id)
    return await _availability(request, conn, first_day, last_day, area_id, kind, limit, cursor)


def _scoped(who: Principal, area_ids: list[str] | None) -> list[str] | None:
    """The asked areas (each must be the user's), or the user's own area by default."""
    if not area_ids:
        return None if who.province else [who.area_id]
    for a in area_ids:
        require_area(who, a, f"area {a}")
    return area_ids


@router.get(
    "/availability.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}}
)
async def availability_csv(
    request: Request,
    conn: Conn,
    who: Viewer,
    first_day: Days,
    last_day: Days,
    area_id: AreaIds = None,
    kind: Kind | None = None,
) -> Response:
    """The availability report as CSV (every row of the range in one file)."""
    area_id = _scoped(who, area_id)
    page = await _availability(
        request, conn, first_day, last_day, area_id, kind, MAX_LIMIT * 100, None
    )
    return _csv(
        f"availability-{first_day}-{last_day}.csv",
        list(AvailabilityRowOut.model_fields),
        (r.model_dump(mode="json") for r in page.items),
    )


def _csv(filename: str, fields: list[str], items: Iterable[dict[str, Any]]) -> Response:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for item in items:
        w.writerow(item)
    return Response(
        buf.getvalue().encode("utf-8-sig"),  # with a BOM: spreadsheet apps read Vietnamese
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
