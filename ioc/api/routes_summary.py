"""Dashboard read models: the leaders' summary, the video wall, a device's recent series, camera
thumbnails, and the two pages they feed (``/wall``, ``/leader``).

Everything is computed from the raw tables with ``time_bucket``. The rollups issue will move the
heavy parts (today's buckets, the 24-hour trend) onto rollup tables; the response shapes below are
the contract and stay. Definitions (availability, congestion index) are in docs/dashboard.md.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from ioc.api.auth import PictureViewer, Viewer, client_ip, require_device
from ioc.api.deps import Conn
from ioc.api.schemas import PlainPath
from ioc.db.cameras import latest_thumbnail
from ioc.db.seed import load_geography
from ioc.domain.device_status import device_status, traffic_sensor_status

router = APIRouter()

BUCKET = timedelta(minutes=5)  # availability "today": share of 5-minute buckets with data
TREND_BUCKET = timedelta(minutes=15)
TREND_SPAN = timedelta(hours=24)
RECENT = timedelta(minutes=15)  # congestion and hotspots: the last three complete buckets
CAMERA_FRESH = timedelta(minutes=5)  # a camera verdict older than this does not count as "up"
CONGESTED_BELOW = 0.5  # a sensor is congested below this share of its free-flow speed
DEFAULT_FREE_FLOW_KMH = 50.0
ACTIVE = ("firing", "acknowledged", "flapping")  # alerts a person must see (not pending/suppressed)
SEVERITIES = ("critical", "major", "minor", "info")
SENSOR_UP = ("ok", "stuck")  # reporting (stuck values are still reports; the map flags them)


# ------------------------------------------------------------------------------ models ---


class Availability(BaseModel):
    devices: int = Field(description="registered, enabled devices of this kind")
    in_maintenance: int = Field(description="of which in a maintenance window now (not counted)")
    counted: int = Field(description="devices - in_maintenance: the denominator of now_pct")
    available_now: int = Field(description="counted devices reporting now (see docs/dashboard.md)")
    now_pct: float | None = Field(description="available_now / counted, %, 1 decimal")
    buckets_expected: int = Field(description="complete 5-min buckets today × counted devices")
    buckets_with_data: int
    today_pct: float | None = Field(description="buckets_with_data / buckets_expected, %")


class Congestion(BaseModel):
    index_pct: float | None = Field(description="share of reporting sensors congested, %")
    congested: int
    reporting: int = Field(description="sensors with a reading in the window")
    window_start: datetime
    window_end: datetime


class AlertCounts(BaseModel):
    critical: int = 0
    major: int = 0
    minor: int = 0
    info: int = 0
    total: int = 0


class AreaSummary(BaseModel):
    id: str
    name: str
    name_en: str
    cameras: Availability
    sensors: Availability
    congestion: Congestion
    alerts: AlertCounts


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


class TrendPoint(BaseModel):
    time: datetime = Field(description="start of the 15-minute bucket (UTC)")
    speed_kmh: float | None
    vehicles: int
    congestion_pct: float | None
    sensors_pct: float | None = Field(description="sensors with a reading / all sensors, %")
    cameras_pct: float | None = Field(description="cameras with a good picture / all cameras, %")


class Province(BaseModel):
    id: str
    name: str
    name_en: str


class LeaderSummary(BaseModel):
    generated_at: datetime
    timezone: str
    day_start: datetime = Field(description="local midnight today, as a UTC instant")
    bucket_minutes: int
    trend_bucket_minutes: int
    province: Province
    cameras: Availability
    sensors: Availability
    congestion: Congestion
    alerts: AlertCounts
    areas: list[AreaSummary]
    hotspots: list[Hotspot]
    trend: list[TrendPoint]


class WallAlert(BaseModel):
    id: int
    severity: str
    status: str
    title: str
    title_en: str
    since: datetime


class WallCamera(BaseModel):
    id: str
    name: str
    area_id: str
    area_name: str
    area_name_en: str
    status: str = Field(description="as on the map: ok, alert, offline, problem, unknown")
    reason: str
    reason_en: str
    health: str | None = Field(description="the camera's latest picture verdict")
    problems: list[str]
    fps: float | None
    last_seen: datetime | None
    thumbnail_at: datetime | None
    in_maintenance: bool
    alert: WallAlert | None = Field(description="its most severe open alert")
    open_alerts: int


class SeriesPoint(BaseModel):
    time: datetime
    speed_kmh: float | None = None
    vehicles: int | None = None
    occupancy_pct: float | None = None
    fps: float | None = None
    ok_pct: float | None = Field(default=None, description="camera checks with a good picture")
    connected_pct: float | None = None
    status: str | None = Field(default=None, description="the camera's most frequent verdict")


class DeviceSeries(BaseModel):
    device_id: str
    kind: str
    start: datetime
    end: datetime
    bucket_minutes: int
    points: list[SeriesPoint]


# ------------------------------------------------------------------------------ helpers ---


def _floor(t: datetime, step: timedelta) -> datetime:
    s = int(step.total_seconds())
    return datetime.fromtimestamp(int(t.timestamp()) // s * s, UTC)


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 1) if den else None


@functools.lru_cache(maxsize=4)
def _timezone(areas_file: Path) -> str:
    return load_geography(areas_file).timezone or "Asia/Ho_Chi_Minh"


async def _rows(conn: Conn, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, params or {})
        return list(await cur.fetchall())


class _Tree:
    """The areas, with each one's reporting group: the child of the root it lies under."""

    def __init__(self, rows: list[Any]) -> None:
        self.by_id = {r["id"]: r for r in rows}
        roots = [r for r in rows if r["parent_id"] is None]
        self.root = roots[0] if roots else None
        self.groups = [r for r in rows if self.root and r["parent_id"] == self.root["id"]]
        self.children: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r["parent_id"] is not None:
                self.children[r["parent_id"]].append(r["id"])

    def group_of(self, area_id: str) -> str | None:
        node, seen = area_id, set()
        while node in self.by_id and node not in seen:
            seen.add(node)
            parent = self.by_id[node]["parent_id"]
            if self.root is not None and parent == self.root["id"]:
                return str(node)
            node = parent
        return None

    def subtree(self, area_id: str) -> set[str]:
        out, todo = set(), [area_id]
        while todo:
            a = todo.pop()
            if a not in out:
                out.add(a)
                todo.extend(self.children.get(a, ()))
        return out


async def _maintenance(
    conn: Conn, tree: _Tree, devices: Iterable[Any], t0: datetime, t1: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Device id -> its maintenance windows overlapping [t0, t1) (area windows cover subtrees)."""
    rows = await _rows(
        conn,
        """SELECT device_id, area_id, starts_at,
                  least(ends_at, coalesce(cancelled_at, ends_at)) AS ends_at
           FROM maintenance
           WHERE starts_at < %(t1)s AND least(ends_at, coalesce(cancelled_at, ends_at)) > %(t0)s""",
        {"t0": t0, "t1": t1},
    )
    by_area: dict[str, list[str]] = defaultdict(list)
    for d in devices:
        by_area[d["area_id"]].append(d["id"])
    out: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for m in rows:
        window = (m["starts_at"], m["ends_at"])
        if m["device_id"] is not None:
            out[m["device_id"]].append(window)
        else:
            for area in tree.subtree(m["area_id"]):
                for dev in by_area.get(area, ()):
                    out[dev].append(window)
    return out


def _in_window(windows: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    return any(s < end and e > start for s, e in windows)


# ------------------------------------------------------------------------------ leader ---


class _Acc:
    """Accumulates one availability figure and one congestion figure for a set of devices."""

    def __init__(self) -> None:
        self.n = Counter[str]()

    def availability(self, kind: str) -> Availability:
        n = self.n
        counted = n[f"{kind}.devices"] - n[f"{kind}.maint"]
        return Availability(
            devices=n[f"{kind}.devices"],
            in_maintenance=n[f"{kind}.maint"],
            counted=counted,
            available_now=n[f"{kind}.up"],
            now_pct=_pct(n[f"{kind}.up"], counted),
            buckets_expected=n[f"{kind}.expected"],
            buckets_with_data=n[f"{kind}.with_data"],
            today_pct=_pct(n[f"{kind}.with_data"], n[f"{kind}.expected"]),
        )

    def congestion(self, r0: datetime, r1: datetime) -> Congestion:
        return Congestion(
            index_pct=_pct(self.n["congested"], self.n["reporting"]),
            congested=self.n["congested"],
            reporting=self.n["reporting"],
            window_start=r0,
            window_end=r1,
        )


@router.get("/api/v1/summary/leader", response_model=LeaderSummary, tags=["dashboard"])
async def leader_summary(request: Request, conn: Conn, who: Viewer) -> LeaderSummary:
    """How the province is doing now and today: availability, congestion, alerts, hotspots,
    the 24-hour trend. Read-only; the leaders' tablet page shows exactly these numbers.
    A user of one district or commune gets the figures of their area only."""
    tz_name = _timezone(request.app.state.settings.areas_file)
    now = (await _rows(conn, "SELECT now() AS now"))[0]["now"]
    local = now.astimezone(ZoneInfo(tz_name))
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    cur = _floor(now, BUCKET)  # today = the complete buckets in [day_start, cur)
    elapsed = max(0, int((cur - day_start) / BUCKET))
    r0, r1 = cur - RECENT, cur
    tree = _Tree(await _rows(conn, "SELECT id, parent_id, name, name_en FROM areas"))
    fleet = await _rows(
        conn,
        """SELECT d.id, d.kind, d.name, d.area_id,
                  coalesce((d.metadata->>'free_flow_kmh')::float, %(ff)s) AS free_flow,
                  s.last_seen, s.online, coalesce(s.stuck_count, 0) AS stuck_count, s.last,
                  s.updated_at
           FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
           WHERE d.enabled AND d.kind IN ('traffic_sensor', 'camera')""",
        {"ff": DEFAULT_FREE_FLOW_KMH},
    )
    fleet = [d for d in fleet if who.sees(d["area_id"])]
    maint = await _maintenance(conn, tree, fleet, min(day_start, now), now + timedelta(seconds=1))
    maint_ids = [d for d, ws in maint.items() if ws]
    seen = {
        r["device_id"]: r
        for r in await _rows(
            conn,
            """SELECT device_id, count(DISTINCT b) AS n,
                      array_agg(DISTINCT b) FILTER (WHERE device_id = ANY(%(m)s)) AS buckets
               FROM (SELECT device_id, time_bucket('5 minutes', time) AS b
                     FROM traffic_observations WHERE time >= %(d0)s AND time < %(d1)s
                     UNION ALL
                     SELECT device_id, time_bucket('5 minutes', time) FROM camera_health
                     WHERE time >= %(d0)s AND time < %(d1)s AND status = 'ok') x
               GROUP BY device_id""",
            {"d0": day_start, "d1": cur, "m": maint_ids},
        )
    }
    recent = {
        r["device_id"]: r
        for r in await _rows(
            conn,
            """SELECT device_id, avg(average_speed) AS speed, sum(intensity) AS vehicles
               FROM traffic_observations WHERE time >= %(r0)s AND time < %(r1)s
               GROUP BY device_id""",
            {"r0": r0, "r1": r1},
        )
    }
    alerts = await _rows(
        conn,
        "SELECT device_id, area_id, severity FROM alerts WHERE status = ANY(%(s)s)",
        {"s": list(ACTIVE)},
    )
    alerts = [a for a in alerts if who.sees(a["area_id"])]

    total, per_area = _Acc(), defaultdict[str, _Acc](_Acc)
    hotspots: list[Hotspot] = []
    alerts_per_device = Counter(a["device_id"] for a in alerts)
    for d in fleet:
        kind = "cameras" if d["kind"] == "camera" else "sensors"
        group = tree.group_of(d["area_id"])
        accs = [total] + ([per_area[group]] if group else [])
        windows = maint.get(d["id"], [])
        in_maint_now = _in_window(windows, now, now + timedelta(microseconds=1))
        up = False
        if not in_maint_now:
            if kind == "cameras":
                last = d["last"] or {}
                up = (
                    last.get("status") == "ok"
                    and d["updated_at"] is not None
                    and now - d["updated_at"] <= CAMERA_FRESH
                )
            else:
                interval = (d["last"] or {}).get("interval_s")
                up = (
                    traffic_sensor_status(
                        now=now,
                        last_seen=d["last_seen"],
                        online=d["online"],
                        stuck_count=d["stuck_count"],
                        interval_s=float(interval) if isinstance(interval, int | float) else None,
                        alerting=False,
                    ).status
                    in SENSOR_UP
                )
        # Today: complete buckets, minus those touched by a maintenance window.
        excluded = {
            i
            for i in (range(elapsed) if windows else ())
            if _in_window(windows, day_start + i * BUCKET, day_start + (i + 1) * BUCKET)
        }
        row = seen.get(d["id"])
        with_data = int(row["n"]) if row else 0
        if row and excluded:
            with_data = sum(
                1 for b in row["buckets"] or () if int((b - day_start) / BUCKET) not in excluded
            )
        rec = recent.get(d["id"]) if kind == "sensors" and not in_maint_now else None
        congested = False
        if rec is not None:
            ratio = float(rec["speed"]) / float(d["free_flow"] or DEFAULT_FREE_FLOW_KMH)
            area = tree.by_id.get(d["area_id"]) or {"name": d["area_id"], "name_en": d["area_id"]}
            hotspots.append(
                Hotspot(
                    device_id=d["id"],
                    name=d["name"],
                    area_id=d["area_id"],
                    area_name=area["name"],
                    area_name_en=area["name_en"],
                    speed_kmh=round(float(rec["speed"]), 1),
                    free_flow_kmh=round(float(d["free_flow"]), 1),
                    speed_ratio_pct=round(100 * ratio, 1),
                    vehicles=int(rec["vehicles"]),
                    congested=(congested := ratio < CONGESTED_BELOW),
                    open_alerts=alerts_per_device[d["id"]],
                )
            )
        for acc in accs:
            acc.n[f"{kind}.devices"] += 1
            acc.n[f"{kind}.maint"] += in_maint_now
            acc.n[f"{kind}.up"] += up
            acc.n[f"{kind}.expected"] += elapsed - len(excluded)
            acc.n[f"{kind}.with_data"] += with_data
            if rec is not None:
                acc.n["reporting"] += 1
                acc.n["congested"] += congested

    counts: dict[str | None, Counter[str]] = defaultdict(Counter)
    for a in alerts:
        for key in (None, tree.group_of(a["area_id"])):
            counts[key][a["severity"]] += 1

    def alert_counts(c: Counter[str]) -> AlertCounts:
        return AlertCounts(**{s: c[s] for s in SEVERITIES}, total=sum(c[s] for s in SEVERITIES))

    root = tree.root or {"id": "", "name": "", "name_en": ""}
    hotspots.sort(key=lambda h: (h.speed_ratio_pct, h.device_id))
    return LeaderSummary(
        generated_at=now,
        timezone=tz_name,
        day_start=day_start,
        bucket_minutes=int(BUCKET.total_seconds() // 60),
        trend_bucket_minutes=int(TREND_BUCKET.total_seconds() // 60),
        province=Province(id=root["id"], name=root["name"], name_en=root["name_en"]),
        cameras=total.availability("cameras"),
        sensors=total.availability("sensors"),
        congestion=total.congestion(r0, r1),
        alerts=alert_counts(counts[None]),
        areas=[
            AreaSummary(
                id=g["id"],
                name=g["name"],
                name_en=g["name_en"],
                cameras=per_area[g["id"]].availability("cameras"),
                sensors=per_area[g["id"]].availability("sensors"),
                congestion=per_area[g["id"]].congestion(r0, r1),
                alerts=alert_counts(counts[g["id"]]),
            )
            for g in sorted(tree.groups, key=lambda g: g["name"])
            if who.province or g["id"] in per_area or g["id"] in counts
        ],
        hotspots=hotspots[:5],
        trend=await _trend(conn, _floor(now, TREND_BUCKET), fleet),
    )


async def _trend(conn: Conn, end: datetime, fleet: list[Any]) -> list[TrendPoint]:
    """The last 24 hours in complete 15-minute buckets, oldest first."""
    start = end - TREND_SPAN
    sensors = sum(1 for d in fleet if d["kind"] == "traffic_sensor")
    cameras = sum(1 for d in fleet if d["kind"] == "camera")
    ids = [d["id"] for d in fleet]
    traffic = {
        r["b"]: r
        for r in await _rows(
            conn,
            """WITH per AS (
                   SELECT time_bucket('15 minutes', o.time) AS b, o.device_id,
                          avg(o.average_speed) AS v, sum(o.intensity) AS n, count(*) AS c
                   FROM traffic_observations o JOIN devices d ON d.id = o.device_id AND d.enabled
                   WHERE o.time >= %(t0)s AND o.time < %(t1)s AND o.device_id = ANY(%(ids)s)
                   GROUP BY 1, 2)
               SELECT per.b, sum(per.v * per.c) / sum(per.c) AS speed, sum(per.n) AS vehicles,
                      count(*) AS sensors,
                      count(*) FILTER (WHERE per.v < %(k)s * coalesce(
                          (d.metadata->>'free_flow_kmh')::float, %(ff)s)) AS congested
               FROM per JOIN devices d ON d.id = per.device_id GROUP BY per.b""",
            {"t0": start, "t1": end, "k": CONGESTED_BELOW, "ff": DEFAULT_FREE_FLOW_KMH, "ids": ids},
        )
    }
    good = {
        r["b"]: int(r["n"])
        for r in await _rows(
            conn,
            """SELECT time_bucket('15 minutes', h.time) AS b, count(DISTINCT h.device_id) AS n
               FROM camera_health h JOIN devices d ON d.id = h.device_id AND d.enabled
               WHERE h.time >= %(t0)s AND h.time < %(t1)s AND h.status = 'ok'
                 AND h.device_id = ANY(%(ids)s) GROUP BY 1""",
            {"t0": start, "t1": end, "ids": ids},
        )
    }
    points = []
    for i in range(int(TREND_SPAN / TREND_BUCKET)):
        b = start + i * TREND_BUCKET
        t = traffic.get(b)
        points.append(
            TrendPoint(
                time=b,
                speed_kmh=round(float(t["speed"]), 1) if t else None,
                vehicles=int(t["vehicles"]) if t else 0,
                congestion_pct=_pct(t["congested"], t["sensors"]) if t else None,
                sensors_pct=_pct(t["sensors"] if t else 0, sensors),
                cameras_pct=_pct(good.get(b, 0), cameras),
            )
        )
    return points


# -------------------------------------------------------------------------------- wall ---

_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@router.get("/api/v1/summary/wall", response_model=list[WallCamera], tags=["dashboard"])
async def wall_cameras(conn: Conn, who: Viewer) -> list[WallCamera]:
    """Every camera with its state, its worst open alert and when its thumbnail was taken."""
    now = (await _rows(conn, "SELECT now() AS now"))[0]["now"]
    tree = _Tree(await _rows(conn, "SELECT id, parent_id, name, name_en FROM areas"))
    cams = await _rows(
        conn,
        """SELECT d.id, d.name, d.area_id, ar.name AS area_name, ar.name_en AS area_name_en,
                  s.last_seen, s.online, s.last, t.taken_at AS thumbnail_at
           FROM devices d JOIN areas ar ON ar.id = d.area_id
           LEFT JOIN device_state s ON s.device_id = d.id
           LEFT JOIN camera_thumbnails t ON t.device_id = d.id
           WHERE d.kind = 'camera' AND d.enabled ORDER BY d.name, d.id""",
    )
    cams = [c for c in cams if who.sees(c["area_id"])]
    maint = await _maintenance(conn, tree, cams, now, now + timedelta(seconds=1))
    open_alerts: dict[str, list[Any]] = defaultdict(list)
    for a in await _rows(
        conn,
        """SELECT a.id, a.device_id, a.severity, a.status, a.title, a.title_en,
                  coalesce(a.fired_at, a.started_at) AS since
           FROM alerts a JOIN devices d ON d.id = a.device_id
           WHERE d.kind = 'camera' AND a.status <> 'resolved'""",
    ):
        open_alerts[a["device_id"]].append(a)
    out = []
    for c in cams:
        mine = sorted(
            open_alerts.get(c["id"], []),
            key=lambda a: (a["status"] not in ACTIVE, _RANK.get(a["severity"], 9), a["since"]),
        )
        last = c["last"] or {}
        st = device_status(
            kind="camera",
            now=now,
            last_seen=c["last_seen"],
            online=c["online"],
            stuck_count=0,
            last=last,
            alerting=any(a["status"] in ACTIVE for a in mine),
        )
        fps = last.get("fps")
        out.append(
            WallCamera(
                id=c["id"],
                name=c["name"],
                area_id=c["area_id"],
                area_name=c["area_name"],
                area_name_en=c["area_name_en"],
                status=st.status,
                reason=st.reason,
                reason_en=st.reason_en,
                health=last.get("status"),
                problems=[
                    str(r.get("code")) for r in last.get("reasons") or [] if isinstance(r, dict)
                ],
                fps=round(float(fps), 1) if isinstance(fps, int | float) else None,
                last_seen=c["last_seen"],
                thumbnail_at=c["thumbnail_at"],
                in_maintenance=_in_window(maint.get(c["id"], []), now, now + timedelta(seconds=1)),
                alert=WallAlert(**{k: mine[0][k] for k in WallAlert.model_fields})
                if mine
                else None,
                open_alerts=len(mine),
            )
        )
    return out


@router.get(
    "/api/v1/cameras/{device_id}/thumbnail.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no picture yet"}},
    tags=["dashboard"],
)
async def camera_thumbnail(
    device_id: PlainPath, conn: Conn, request: Request, who: PictureViewer
) -> Response:
    """The camera's latest picture (only the latest is kept). Not cached anywhere. Pictures
    show people: only roles allowed to see them, in their own area, and every view is audited
    (one audit row per user, camera and 10 minutes, with the number of views)."""
    await require_device(conn, who, device_id)
    await _note_view(conn, who.username, device_id, client_ip(request))
    got = await latest_thumbnail(conn, device_id)
    if got is None:
        raise HTTPException(404, f"no thumbnail for camera {device_id}")
    jpeg, taken = got
    return Response(
        jpeg,
        media_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Taken-At": taken.isoformat()},
    )


# ------------------------------------------------------------------------------ series ---


@router.get("/api/v1/devices/{device_id}/series", response_model=DeviceSeries, tags=["dashboard"])
async def device_series(
    device_id: PlainPath, conn: Conn, who: Viewer, hours: float = Query(6, gt=0, le=48)
) -> DeviceSeries:
    """The device's recent history in buckets: traffic speed, vehicles and occupancy, or camera
    fps and picture health. Buckets without data are absent (a gap in the chart)."""
    await require_device(conn, who, device_id)
    dev = await _rows(
        conn, "SELECT kind, now() AS now FROM devices WHERE id = %(id)s", {"id": device_id}
    )
    if not dev:
        raise HTTPException(404, f"device {device_id} does not exist")
    kind, now = dev[0]["kind"], dev[0]["now"]
    minutes = 5 if hours <= 6 else 5 * math.ceil(hours * 60 / 72 / 5)  # at most ~72 points
    step = timedelta(minutes=minutes)
    start = _floor(now - timedelta(hours=hours), step)
    points: list[SeriesPoint] = []
    if kind == "traffic_sensor":
        for r in await _rows(
            conn,
            """SELECT time_bucket(%(step)s, time) AS t, avg(average_speed) AS speed,
                      sum(intensity) AS vehicles, avg(occupancy) * 100 AS occupancy
               FROM traffic_observations WHERE device_id = %(id)s AND time >= %(t0)s
               GROUP BY 1 ORDER BY 1""",
            {"step": step, "id": device_id, "t0": start},
        ):
            points.append(
                SeriesPoint(
                    time=r["t"],
                    speed_kmh=round(float(r["speed"]), 1),
                    vehicles=int(r["vehicles"]),
                    occupancy_pct=round(float(r["occupancy"]), 1),
                )
            )
    elif kind == "camera":
        for r in await _rows(
            conn,
            """SELECT time_bucket(%(step)s, time) AS t, avg(fps) AS fps,
                      100.0 * avg((status = 'ok')::int) AS ok, 100.0 * avg(connected::int) AS conn,
                      mode() WITHIN GROUP (ORDER BY status) AS status
               FROM camera_health WHERE device_id = %(id)s AND time >= %(t0)s
               GROUP BY 1 ORDER BY 1""",
            {"step": step, "id": device_id, "t0": start},
        ):
            points.append(
                SeriesPoint(
                    time=r["t"],
                    fps=round(float(r["fps"]), 1) if r["fps"] is not None else None,
                    ok_pct=round(float(r["ok"]), 1),
                    connected_pct=round(float(r["conn"]), 1),
                    status=r["status"],
                )
            )
    return DeviceSeries(
        device_id=device_id, kind=kind, start=start, end=now, bucket_minutes=minutes, points=points
    )


async def _note_view(conn: Conn, username: str, device_id: str, ip: str | None) -> None:
    await conn.execute(
        """INSERT INTO picture_views (bucket, username, device_id, ip)
           VALUES (time_bucket('10 minutes', now()), %s, %s, %s)
           ON CONFLICT (bucket, username, device_id)
           DO UPDATE SET views = picture_views.views + 1, last_at = now(),
                         ip = coalesce(EXCLUDED.ip, picture_views.ip)""",
        (username, device_id, ip),
    )
