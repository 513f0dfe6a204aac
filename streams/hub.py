"""One LISTEN connection per API process fans events out to its clients' bounded queues.

NOTIFY carries only the event id; the hub reads the rows themselves (in id order, which is commit
order, see ``ioc.db.events``) and also polls, so a notification lost with a dropped connection
delays an event by at most ``poll_s`` and never loses it. A client whose queue is full is marked
for resync; it never blocks the hub or the other clients.

Cost per delivered message matters (1,000 clients × 20 events/s is 20,000 messages a second on
one core): the hub encodes each event once, as JSON and as a websocket frame (``streams.direct``),
writes it straight to each caught-up client's socket that can take it, or appends it to the
client's deque and wakes its session (only if it sleeps); a session sends everything queued per
wake-up; heartbeats come from one timer for all clients, not a timeout per wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog

from ioc.db import events
from ioc.db.connect import connect, describe
from streams import direct
from streams import metrics as m

log = structlog.get_logger("streams.hub")
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "info": 3}


@dataclass(frozen=True, slots=True)
class Filter:
    """What a client subscribed to. Empty sets mean everything."""

    areas: frozenset[str] = frozenset()  # area ids; each includes its whole subtree
    kinds: frozenset[str] = frozenset()  # event kind prefixes, e.g. "alert."
    severities: frozenset[str] = frozenset()
    min_severity: str | None = None  # e.g. "major": major and critical only

    def matches(self, event: dict[str, Any], ancestors: dict[str, set[str]]) -> bool:
        if self.severities and event.get("severity") not in self.severities:
            return False
        if self.min_severity is not None:
            sev = event.get("severity")
            if sev not in SEVERITY_RANK or SEVERITY_RANK[sev] > SEVERITY_RANK[self.min_severity]:
                return False
        if self.kinds and not any(event["kind"].startswith(k) for k in self.kinds):
            return False
        if self.areas:
            area = event.get("area_id")
            return area is not None and bool(ancestors.get(area, {area}) & self.areas)
        return True


@dataclass(frozen=True, slots=True)
class Encoded:
    """An event encoded once for every client: its JSON text, and the websocket frame carrying
    it (``streams.direct``), with its id for ordering."""

    id: int
    text: str
    frame: bytes


HEARTBEAT = Encoded(0, "", b"")  # queued to a session that has sent nothing for HEARTBEAT_S


class Subscription:
    """One client's bounded queue of encoded events. Full: the client is marked ``overflowed``
    (it must resync) and gets nothing more.

    With a ``writer`` (``streams.direct``) and once its session is ``live`` (caught up), the hub
    writes an event straight to the socket when nothing is queued before it, the session is not
    in the middle of sending, and the socket takes it without waiting; otherwise the event is
    queued and the session sends it, in order. ``last`` is the last event id sent either way."""

    __slots__ = (
        "filter",
        "limit",
        "overflowed",
        "writer",
        "live",
        "busy",
        "last",
        "_items",
        "_waiter",
        "active_at",
    )

    def __init__(self, flt: Filter, limit: int, writer: direct.DirectWriter | None = None) -> None:
        self.filter = flt
        self.limit = limit
        self.overflowed = False
        self.writer = writer
        self.live = False  # set by the session once caught up (only with a writer)
        self.busy = False  # the session is sending what it took from the queue
        self.last = 0
        self.active_at = time.monotonic()  # last time something was sent
        self._items: deque[Encoded] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def write_now(self, item: Encoded, now: float) -> bool:
        """Send ``item`` at once if nothing may come before it; False: queue it instead."""
        w = self.writer
        if (
            w is not None
            and self.live
            and not self.busy
            and not self._items
            and item.id > self.last
            and w.try_write(item.frame)
        ):
            self.last = item.id
            self.active_at = now
            return True
        return False

    def push(self, item: Encoded) -> bool:
        """Queue one message; False (and overflowed) when the client is too far behind."""
        if len(self._items) >= self.limit:
            self.overflowed = True
            self._wake()
            return False
        self._items.append(item)
        self._wake()
        return True

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self) -> None:
        """Until something is queued (or the client overflowed)."""
        if self._items or self.overflowed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> list[Encoded]:
        """Everything queued, oldest first."""
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)


def to_message(row: dict[str, Any]) -> dict[str, Any]:
    """An event as the client sees it: alert events carry the alert as it is after the change
    (``alert``), other kinds (camera, maintenance, ...) their payload as ``data``."""
    key = "alert" if row["kind"].startswith("alert.") else "data"
    return {
        "type": "event",
        "id": row["id"],
        "kind": row["kind"],
        "time": row["time"].isoformat(),
        "actor": row["actor"],
        "device_id": row["device_id"],
        "area_id": row["area_id"],
        "severity": row["severity"],
        key: row["payload"],
    }


class EventHub:
    def __init__(
        self,
        *,
        dsn: str,
        client_queue_max: int = 1000,
        poll_s: float = 1.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.client_queue_max = client_queue_max
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.position = 0  # last event id fanned out
        self.resyncs = 0
        self.listening = False  # LISTEN connection up and caught up once (readiness)
        self.read_at: float | None = None  # monotonic time the events log was last read
        self.ancestors: dict[str, set[str]] = {}
        self._subs: set[Subscription] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="event-hub"),
            asyncio.create_task(self._heartbeats(), name="event-hub-heartbeats"),
        ]
        await asyncio.wait_for(self._started.wait(), timeout=15)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._up(False)

    async def _heartbeats(self) -> None:
        """One timer for every client: a session idle for ``heartbeat_s`` gets a heartbeat."""
        while True:
            await asyncio.sleep(self.heartbeat_s / 5)
            due = time.monotonic() - self.heartbeat_s
            for sub in list(self._subs):
                if sub.active_at <= due and not len(sub):
                    sub.active_at = time.monotonic()
                    sub.push(HEARTBEAT)

    def subscribe(self, flt: Filter, writer: direct.DirectWriter | None = None) -> Subscription:
        sub = Subscription(flt, self.client_queue_max, writer)
        self._subs.add(sub)
        m.CLIENTS.inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            m.CLIENTS.dec()

    @property
    def clients(self) -> int:
        return len(self._subs)

    async def _load_areas(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.cursor() as cur:
            await cur.execute("SELECT id, parent_id FROM areas")
            parent = {r["id"]: r["parent_id"] for r in await cur.fetchall()}
        ancestors: dict[str, set[str]] = {}
        for area in parent:
            chain, node = set(), area
            while node is not None and node not in chain:
                chain.add(node)
                node = parent.get(node)
            ancestors[area] = chain
        self.ancestors = ancestors

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            listen = reader = None
            try:
                listen = await connect(self.dsn, autocommit=True)
                reader = await connect(self.dsn, autocommit=True)
                await listen.execute(f"LISTEN {events.NOTIFY_CHANNEL}")
                await self._load_areas(reader)
                if not self._started.is_set():
                    self.position = await events.watermark(reader)
                    self._started.set()
                log.info("event hub listening", position=self.position)
                backoff = 0.5
                while True:
                    await self._drain(reader)
                    self._up(True)
                    gen = listen.notifies(timeout=self.poll_s, stop_after=1)
                    async for _ in gen:
                        pass
            except (psycopg.OperationalError, OSError, RuntimeError) as exc:
                self._up(False)
                m.RECONNECTS.inc()
                log.warning("event hub lost the database; reconnecting", error=describe(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                for c in (listen, reader):
                    if c is not None:
                        await c.close()

    def _up(self, up: bool) -> None:
        self.listening = up
        m.LISTENING.set(up)
        m.DATABASE_UP.set(up)
        if up:
            self.read_at = time.monotonic()
            m.POSITION.set(self.position)

    async def _drain(self, reader: psycopg.AsyncConnection[Any]) -> None:
        while True:
            rows = await events.after(reader, self.position, limit=500)
            for row in rows:
                self._fan_out(to_message(row))
                self.position = row["id"]
            m.EVENTS.inc(len(rows))
            if len(rows) < 500:
                return

    def _fan_out(self, message: dict[str, Any]) -> None:
        encoded: Encoded | None = None
        delivered = 0
        now = time.monotonic()
        for sub in self._subs:
            if sub.overflowed or not sub.filter.matches(message, self.ancestors):
                continue
            if encoded is None:
                text = json.dumps(message, ensure_ascii=False)
                encoded = Encoded(message["id"], text, direct.frame(text))
            if sub.write_now(encoded, now) or sub.push(encoded):
                delivered += 1
            else:
                self.resyncs += 1
                m.RESYNCS.inc()
        if delivered:
            m.DELIVERIES.inc(delivered)
