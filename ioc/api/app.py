"""Application factory (``ioc api``). Owns the pool and the event hub; stops them in reverse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from starlette.middleware.base import RequestResponseEndpoint

from ioc.api import (
    auth,
    instrument,
    pages,
    routes,
    routes_admin,
    routes_alerts,
    routes_leader,
    routes_ops,
    routes_stats,
    routes_summary,
    ws,
)
from ioc.api.session_watch import SessionWatch
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
        sessions = SessionWatch(pool, every_s=settings.ws_session_check_seconds)
        await sessions.start()
        app.state.pool, app.state.hub, app.state.sessions = pool, hub, sessions
        try:
            yield
        finally:
            await sessions.stop()
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
    app.include_router(auth.router)
    app.include_router(routes_admin.router)
    app.include_router(pages.router)
    app.include_router(routes.router)
    app.include_router(routes_alerts.router)
    app.include_router(routes_summary.router)
    app.include_router(routes_leader.router)
    app.include_router(routes_stats.router)
    app.include_router(routes_ops.router)
    app.include_router(ws.router)
    app.mount("/metrics", make_asgi_app())
    front = settings.frontend_dir
    app.mount("/static", StaticFiles(directory=front, check_dir=False), name="static")
    headers = security_headers(settings)

    @app.middleware("http")
    async def add_security_headers(
        request: Request, call_next: RequestResponseEndpoint
    ) -> Response:
        response = await call_next(request)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    instrument.install(app)  # request ids and the access log (outermost), pool metrics
    return app


def security_headers(settings: Settings) -> dict[str, str]:
    """Sent with every response: no framing, no sniffing, no referrer, scripts only from us."""
    out = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
            "base-uri 'self'; form-action 'self'; object-src 'none'"
        ),
    }
    if settings.secure_cookies:
        out["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return out
