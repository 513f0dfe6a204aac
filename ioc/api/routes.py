"""REST routes: geography, devices, alerts, health."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ioc.api.auth import Viewer, scope_area
from ioc.api.deps import Conn
from ioc.api.schemas import PLAIN, AlertOut, AreaOut, DeviceOut, Health, SequenceQualityOut
from ioc.db import alerts as alerts_db
from ioc.db import devices as devices_db
from ioc.db import quality

router = APIRouter(prefix="/api/v1")


def _geojson(path: Path) -> Response:
    if not path.is_file():
        raise HTTPException(404, f"map data not found: {path.name}")
    return Response(path.read_bytes(), media_type="application/geo+json")


@router.get("/geo/province", response_class=Response)
async def province_outline(request: Request, who: Viewer) -> Response:
    """The configured province's outline (shipped GeoJSON: no tile server needed)."""
    return _geojson(request.app.state.province_geojson)


@router.get("/geo/provinces", response_class=Response)
async def all_provinces(request: Request, who: Viewer) -> Response:
    return _geojson(request.app.state.settings.frontend_dir / "geo" / "vn-provinces.geojson")


@router.get("/areas", response_model=list[AreaOut])
async def list_areas(conn: Conn, who: Viewer) -> list[dict[str, Any]]:
    """The user's area, the areas above it (for the breadcrumb) and every area below it."""
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT id, parent_id, name, name_en, level, lat, lon FROM areas
               WHERE %(all)s OR id = ANY(%(below)s)
                  OR id IN (SELECT ancestor_id FROM area_closure WHERE area_id = %(mine)s)
               ORDER BY depth, id""",
            {"all": who.province, "below": list(who.areas), "mine": who.area_id},
        )
        return list(await cur.fetchall())


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(
    conn: Conn, who: Viewer, area_id: str | None = Query(None, pattern=PLAIN)
) -> list[dict[str, Any]]:
    """Every device (of an area's subtree) with its status and the reason, computed now."""
    return await devices_db.device_states(conn, area_id=scope_area(who, area_id))


@router.get("/quality/sequence", response_model=list[SequenceQualityOut])
async def sequence_quality(
    conn: Conn, who: Viewer, minutes: int = Query(60, ge=1, le=7 * 24 * 60)
) -> list[dict[str, Any]]:
    """Per-device gaps, out-of-order and late readings over the last ``minutes``."""
    rows = await quality.sequence_report(conn, since=timedelta(minutes=minutes))
    if who.province:
        return rows
    mine = {d["id"] for d in await devices_db.device_states(conn, area_id=who.area_id)}
    return [r for r in rows if r["device_id"] in mine]


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    conn: Conn,
    who: Viewer,
    status: Literal["open", "all"] = "open",
    limit: int = Query(500, ge=1, le=5000),
) -> list[dict[str, Any]]:
    """Alerts of the user's area, newest first."""
    return await alerts_db.list_alerts(
        conn, open_only=status == "open", limit=limit, areas=None if who.province else who.areas
    )


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
