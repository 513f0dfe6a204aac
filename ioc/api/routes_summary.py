"""Dashboard read models: the video wall's cameras, a device's recent series, camera
thumbnails. The leaders' summary is routes_leader.py (from the rollups). Definitions are in
docs/dashboard.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from ioc.api.auth import PictureViewer, Viewer, client_ip, require_device
from ioc.api.deps import Conn
from ioc.api.schemas import PlainPath
from ioc.db.cameras import latest_thumbnail
from ioc.domain.device_status import device_status

router = APIRouter()

ACTIVE = ("firing", "acknowledged", "flapping")  # alerts a person must see (not pending/suppressed)
SEVERITIES = ("critical", "major", "minor", "info")


# ------------------------------------------------------------------------------ models ---


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


async def _rows(conn: Conn, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, params or {})
        return list(await cur.fetchall())


class _Tree:
    """The areas, to find each one's subtree (an area's maintenance window covers it)."""

    def __init__(self, rows: list[Any]) -> None:
        self.children: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r["parent_id"] is not None:
                self.children[r["parent_id"]].append(r["id"])

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
