"""The websocket endpoint: parse the subscription, then hand the session to ``streams``."""

from __future__ import annotations

import contextlib

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from streams.hub import Filter
from streams.session import serve

router = APIRouter()
log = structlog.get_logger("ioc.api.ws")


def _set(value: str | None) -> frozenset[str]:
    return frozenset(v for v in (value or "").split(",") if v)


@router.websocket("/api/v1/stream")
async def stream(
    ws: WebSocket,
    since: int | None = None,
    area: str | None = None,
    kind: str | None = None,
    severity: str | None = None,
) -> None:
    await ws.accept()
    flt = Filter(areas=_set(area), kinds=_set(kind), severities=_set(severity))
    why = "closed"
    with contextlib.suppress(WebSocketDisconnect, ConnectionClosed, RuntimeError):
        why = await serve(ws.app.state.hub, ws.send_json, since=since, flt=flt)
    if why == "resync":
        with contextlib.suppress(Exception):
            await ws.close(code=4000, reason="resync")
