"""Application factory (``ioc api``). Owns the pool and the event hub; stops them in reverse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app

from ioc.api import routes, routes_alerts, routes_stats, routes_summary, ws
from ioc.config import PROJECT_ROOT, Settings, get_settings
from ioc.db.connect import open_pool
from ioc.db.seed import load_geography
from streams.hub import EventHub


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    geo = load_geography(settings.areas_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = open_pool(settings.dsn)
        await pool.open(wait=True, timeout=15)
        hub = EventHub(dsn=settings.dsn, client_queue_max=settings.ws_client_queue_max)
        await hub.start()
        app.state.pool, app.state.hub = pool, hub
        try:
            yield
        finally:
            await hub.stop()
            await pool.close()

    app = FastAPI(
        title="IOC monitoring API",
        version="1",
        summary="Traffic sensors, cameras, alerts and the live event stream of an operations centre.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    outline = Path(geo.province_geojson or "frontend/geo/vn-58.geojson")
    app.state.province_geojson = outline if outline.is_absolute() else PROJECT_ROOT / outline
    app.include_router(routes.router)
    app.include_router(routes_alerts.router)
    app.include_router(routes_summary.router)
    app.include_router(routes_stats.router)
    app.include_router(ws.router)
    app.mount("/metrics", make_asgi_app())
    front = settings.frontend_dir
    app.mount("/static", StaticFiles(directory=front, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(front / "index.html")

    return app
