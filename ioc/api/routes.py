"""REST routes: geography, devices, alerts, health."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ioc.api.deps import Conn
from ioc.api.schemas import AlertOut, AreaOut, DeviceOut, Health, SequenceQualityOut
from ioc.db import alerts as alerts_db
from ioc.db import devices as devices_db
from ioc.db import quality

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
    """Every device (of an area's subtree) with its status and the reason, computed now."""
    return await devices_db.device_states(conn, area_id=area_id)


@router.get("/quality/sequence", response_model=list[SequenceQualityOut])
async def sequence_quality(
    conn: Conn, minutes: int = Query(60, ge=1, le=7 * 24 * 60)
) -> list[dict[str, Any]]:
    """Per-device gaps, out-of-order and late readings over the last ``minutes``."""
    return await quality.sequence_report(conn, since=timedelta(minutes=minutes))


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    conn: Conn, status: Literal["open", "all"] = "open", limit: int = 500
) -> list[dict[str, Any]]:
    return await alerts_db.list_alerts(conn, open_only=status == "open", limit=min(limit, 5000))


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
