"""REST routes: geography, devices, alerts, health."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response

from ioc.api.deps import Conn
from ioc.api.schemas import AckIn, AlertOut, AreaOut, DeviceOut, Health
from ioc.db import alerts as alerts_db

router = APIRouter(prefix="/api/v1")


def _geojson(path: Path) -> Response:
    if not path.is_file():
        raise HTTPException(404, f"map data not found: {path.name}")
    return Response(path.read_bytes(), media_type="application/geo+json")


@router.get("/geo/province", response_class=Response)
async def province_outline(request: Request) -> Response:
    """The configured province's outline (shipped GeoJSON: no tile server needed)."""
    return _geojson(request.app.state.province_geojson)


@router.get("/geo/provinces", response_class=Response)
async def all_provinces(request: Request) -> Response:
    return _geojson(request.app.state.settings.frontend_dir / "geo" / "vn-provinces.geojson")


@router.get("/areas", response_model=list[AreaOut])
async def list_areas(conn: Conn) -> list[dict[str, Any]]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT id, parent_id, name, name_en, level, lat, lon FROM areas ORDER BY depth, id"
        )
        return list(await cur.fetchall())


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(conn: Conn, area_id: str | None = None) -> list[dict[str, Any]]:
    async with conn.cursor() as cur:
        await cur.execute(
            """WITH RECURSIVE sub AS (
                   SELECT id FROM areas WHERE %(area)s::text IS NULL OR id = %(area)s
                   UNION SELECT a.id FROM areas a JOIN sub ON a.parent_id = sub.id
                     WHERE %(area)s::text IS NOT NULL)
               SELECT d.id, d.name, d.kind, d.area_id, d.lat, d.lon, s.last_seen, s.last,
                      CASE WHEN EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id
                                        AND a.status IN ('firing', 'acknowledged')) THEN 'alert'
                           WHEN s.last_seen IS NULL THEN 'unknown' ELSE 'ok' END AS status
               FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
               WHERE d.area_id IN (SELECT id FROM sub)
               ORDER BY d.id""",
            {"area": area_id},
        )
        return list(await cur.fetchall())


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    conn: Conn, status: Literal["open", "all"] = "open", limit: int = 500
) -> list[dict[str, Any]]:
    return await alerts_db.list_alerts(conn, open_only=status == "open", limit=min(limit, 5000))


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
async def acknowledge(alert_id: int, body: AckIn, conn: Conn) -> dict[str, Any]:
    async with conn.transaction():
        done = await alerts_db.transition(
            conn,
            alert_id,
            expected=("firing",),
            to="acknowledged",
            actor="operator",
            note=body.note,
        )
        row = await alerts_db.get(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    if done is None and row["status"] != "acknowledged":
        raise HTTPException(
            409, f"alert {alert_id} is {row['status']}; only firing alerts can be acknowledged"
        )
    return row


@router.get("/health", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    ok = True
    try:
        async with request.app.state.pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception:
        ok = False
    hub = request.app.state.hub
    return {
        "status": "ok" if ok else "degraded",
        "database": ok,
        "stream_position": hub.position,
        "stream_clients": hub.clients,
    }
