"""The websocket endpoint: parse the subscription, then hand the session to ``streams``.

Heartbeats go both ways: the server sends ``heartbeat`` every few seconds, and answers a
client's ``{"type": "ping"}`` with ``{"type": "pong"}``. Protocol: docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from streams.hub import SEVERITY_RANK, Filter
from streams.session import serve

router = APIRouter()
log = structlog.get_logger("ioc.api.ws")
GONE = (WebSocketDisconnect, ConnectionClosed, RuntimeError)


def _set(value: str | None) -> frozenset[str]:
    return frozenset(v for v in (value or "").split(",") if v)


@router.websocket("/api/v1/stream")
async def stream(
    ws: WebSocket,
    since: int | None = Query(None, description="last event id seen: resume after it"),
    area: str | None = Query(None, description="area ids (comma-separated), with subtrees"),
    kind: str | None = Query(None, description="event kind prefixes, e.g. alert.,camera."),
    severity: str | None = Query(None, description="exact severities (comma-separated)"),
    min_severity: str | None = Query(None, description="critical|major|minor|info"),
) -> None:
    if min_severity is not None and min_severity not in SEVERITY_RANK:
        await ws.close(code=4400, reason=f"min_severity must be one of {list(SEVERITY_RANK)}")
        return
    await ws.accept()
    flt = Filter(
        areas=_set(area), kinds=_set(kind), severities=_set(severity), min_severity=min_severity
    )
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with lock:  # the session and the ping answers share one socket
            await ws.send_text(text)

    async def answer_pings() -> None:
        with contextlib.suppress(*GONE):
            while True:
                msg = await ws.receive_json()
                if isinstance(msg, dict) and msg.get("type") == "ping":
                    await send(json.dumps({"type": "pong", "echo": msg.get("echo")}))

    session = asyncio.create_task(serve(ws.app.state.hub, send, since=since, flt=flt))
    reader = asyncio.create_task(answer_pings())
    why = "closed"
    try:
        done, _ = await asyncio.wait({session, reader}, return_when=asyncio.FIRST_COMPLETED)
        if session in done and session.exception() is None:
            why = session.result()
    finally:
        for task in (session, reader):
            task.cancel()
        for task in (session, reader):
            with contextlib.suppress(asyncio.CancelledError, *GONE):
                await task
    if why == "resync":
        with contextlib.suppress(Exception):
            await ws.close(code=4000, reason="resync")
