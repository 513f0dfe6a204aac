"""The websocket endpoint: check who is asking, parse the subscription, then hand the session
to ``streams``.

Sign-in: the browser's session cookie, or ``Authorization: Bearer`` for scripts; never a token in
the URL (URLs end up in logs). A browser's Origin must be the API's own or an allowed one (a
foreign page must not open a socket with the operator's cookie). A user only ever receives
events of their own area. The socket closes (4401) when the session is revoked or expires.

Heartbeats go both ways: the server sends ``heartbeat`` every few seconds, and answers a
client's ``{"type": "ping"}`` with ``{"type": "pong"}`` (a message it does not understand gets an
``error``; the stream goes on). Protocol: docs/websocket.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from ioc.api.auth import authenticate, origin_allowed
from ioc.security.policy import Perm
from streams import metrics, protocol
from streams.direct import DirectWriter
from streams.hub import SEVERITY_RANK, Filter
from streams.session import serve

router = APIRouter()
log = structlog.get_logger("ioc.api.ws")
GONE = (WebSocketDisconnect, ConnectionClosed, RuntimeError, OSError)
MAX_BAD_MESSAGES = 20  # client messages in a row that are not understood before closing (4400)


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
    settings = ws.app.state.settings
    if not origin_allowed(ws, settings):
        log.warning("websocket from a foreign origin refused", origin=ws.headers.get("origin"))
        await ws.close(code=4403, reason="origin not allowed")  # before accept: HTTP 403
        return
    async with ws.app.state.pool.connection() as conn:
        who = await authenticate(ws, conn, settings)
    await ws.accept()  # accept first, so the client can read why it is closed
    if who is None or not who.can(Perm.VIEW):
        await ws.close(code=4401, reason="not_signed_in")
        return
    if min_severity is not None and min_severity not in SEVERITY_RANK:
        await ws.close(code=4400, reason=f"min_severity must be one of {list(SEVERITY_RANK)}")
        return
    areas = _set(area)
    if not who.province:
        if any(a not in who.areas for a in areas):
            await ws.close(code=4403, reason="area outside your area")
            return
        areas = areas or frozenset({who.area_id})
    flt = Filter(
        areas=areas, kinds=_set(kind), severities=_set(severity), min_severity=min_severity
    )
    lock = asyncio.Lock()

    async def send(text: str) -> None:
        async with lock:  # the session and the ping answers share one socket
            await ws.send_text(text)

    # Live events as frames built once for all clients, where the connection allows it.
    writer = DirectWriter.of(ws.scope.get("state", {}).get("asgi_send"))
    metrics.SESSIONS.labels("asgi" if writer is None else "direct").inc()

    async def answer_pings() -> None:
        """Answer each client message (streams/protocol.py): a bad one gets an error and the
        stream goes on; only a client that sends nothing but garbage is closed (4400)."""
        bad = 0
        with contextlib.suppress(*GONE):
            while True:
                frame = await ws.receive()
                if frame["type"] == "websocket.disconnect":
                    return
                text = frame.get("text")
                if text is None:  # a binary frame: read as UTF-8 text
                    text = (frame.get("bytes") or b"").decode("utf-8", errors="replace")
                msg = protocol.parse_client_message(text)
                if isinstance(msg, protocol.ProtocolError):
                    bad += 1
                    await send(protocol.error(msg))
                    if bad >= MAX_BAD_MESSAGES:
                        log.warning("websocket closed after bad messages", last=msg.code.value)
                        async with lock:
                            await ws.close(code=4400, reason="too many bad messages")
                        return
                else:
                    bad = 0
                    await send(protocol.pong(msg))

    watch = ws.app.state.sessions
    ended = watch.watch(who.session_id)

    async def watch_session() -> str:
        await ended.wait()
        return "session_ended"

    session = asyncio.create_task(
        serve(ws.app.state.hub, send, since=since, flt=flt, writer=writer)
    )
    reader = asyncio.create_task(answer_pings())
    watcher = asyncio.create_task(watch_session())
    tasks: tuple[asyncio.Task[Any], ...] = (session, reader, watcher)
    why = "closed"
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for ended in (session, watcher):
            if ended in done and ended.exception() is None:
                why = ended.result()
    finally:
        watch.forget(who.session_id, ended)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, *GONE):
                await t
    if why == "resync":
        with contextlib.suppress(Exception):
            await ws.close(code=4000, reason="resync")
    elif why == "session_ended":
        with contextlib.suppress(Exception):
            await ws.close(code=4401, reason="session_ended")
