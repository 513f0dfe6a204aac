"""Ends the live streams of sessions that ended (signed out, revoked, expired, user disabled).

One query every few seconds covers every open socket of this API process, however many there
are; each socket waits on its session's event."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import structlog

from ioc.security import users

log = structlog.get_logger("ioc.api.sessions")


class SessionWatch:
    def __init__(self, pool: Any, every_s: float = 10.0) -> None:
        self.pool, self.every_s = pool, every_s
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def watch(self, session_id: str) -> asyncio.Event:
        ended = asyncio.Event()
        self._waiting[session_id].add(ended)
        return ended

    def forget(self, session_id: str, ended: asyncio.Event) -> None:
        events = self._waiting.get(session_id)
        if events is not None:
            events.discard(ended)
            if not events:
                del self._waiting[session_id]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="session-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> None:
        ids = list(self._waiting)
        if not ids:
            return
        async with self.pool.connection(timeout=5) as conn:
            live = await users.live_sessions(conn, ids)
        for sid in set(ids) - live:
            for ended in self._waiting.get(sid, ()):
                ended.set()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.check()
            except Exception as e:  # database away: keep streaming, check again later
                log.warning("session check failed", error=type(e).__name__)
