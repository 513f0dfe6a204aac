"""The dashboard's pages. Each needs a live session; without one the browser goes to /login
and comes back to the page it asked for."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from ioc.api.auth import authenticate

router = APIRouter(include_in_schema=False)
Page = Literal["index.html", "wall.html", "leader.html"]


async def _page(request: Request, name: Page) -> Response:
    async with request.app.state.pool.connection() as conn:
        who = await authenticate(request, conn, request.app.state.settings)
    if who is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return FileResponse(
        request.app.state.settings.frontend_dir / name, headers={"Cache-Control": "no-store"}
    )


@router.get("/")
async def index(request: Request) -> Response:
    return await _page(request, "index.html")


@router.get("/wall")
async def wall_page(request: Request) -> Response:
    return await _page(request, "wall.html")


@router.get("/leader")
async def leader_page(request: Request) -> Response:
    return await _page(request, "leader.html")


@router.get("/login")
async def login_page(request: Request) -> FileResponse:
    return FileResponse(request.app.state.settings.frontend_dir / "login.html")
