"""One client's live session, independent of the websocket library (the API adapts it).

Resume protocol: a client connects with the last event id it saw and gets exactly the events
after it, in order, then live ones; with no id (or one too old or from another database) it gets
a snapshot of open alerts with a watermark. Events are never sent twice: anything at or below the
last id sent is skipped. If the client cannot keep up it is told to resync, never silently skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from ioc.db import alerts as alerts_db
from ioc.db import devices as devices_db
from ioc.db import events
from ioc.db.connect import connect
from streams.direct import DirectWriter
from streams.hub import HEARTBEAT, EventHub, Filter, to_message

Send = Callable[[str], Awaitable[None]]  # one JSON text message


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


async def _snapshot(
    conn: psycopg.AsyncConnection[Any], flt: Filter, hub: EventHub
) -> dict[str, Any]:
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        mark = await events.watermark(conn)
        rows = await alerts_db.list_alerts(conn, open_only=True)
        devices = await devices_db.device_states(conn)
    alerts = [
        alerts_db.to_json(r)
        for r in rows
        if flt.matches(
            {"kind": "alert.", "severity": r["severity"], "area_id": r["area_id"]}, hub.ancestors
        )
    ]
    states = [
        {k: d[k] for k in ("id", "kind", "area_id", "status", "reason", "reason_en")}
        | {"last_seen": d["last_seen"].isoformat() if d["last_seen"] else None}
        for d in devices
        if not flt.areas or bool(hub.ancestors.get(d["area_id"], {d["area_id"]}) & flt.areas)
    ]
    return {"type": "snapshot", "watermark": mark, "alerts": alerts, "devices": states}


async def serve(
    hub: EventHub,
    send: Send,
    *,
    since: int | None,
    flt: Filter,
    writer: DirectWriter | None = None,
) -> str:
    """Run a session until the client goes away or must resync; returns why it ended.
    With a ``writer`` (``streams.direct``), live events go out as the hub's pre-built frames,
    mostly written by the hub itself; else as text through ``send``."""
    sub = hub.subscribe(flt, writer)  # subscribe first: nothing committed from now on slips past
    try:
        conn = await connect(hub.dsn, autocommit=True)
        try:
            sub.last = await _catch_up(conn, hub, send, since, flt)
        finally:
            await conn.close()
        sub.live = writer is not None
        while True:
            await sub.wait()
            if sub.overflowed:
                await send(encode({"type": "resync", "reason": "client_too_slow"}))
                return "resync"
            sub.busy = True  # the hub queues behind what this loop is sending
            try:
                for msg in sub.take():
                    if msg is HEARTBEAT:
                        mark = max(sub.last, hub.position)
                        await send(encode({"type": "heartbeat", "watermark": mark}))
                    elif msg.id > sub.last:
                        if writer is not None:
                            await writer.write(msg.frame)
                        else:
                            await send(msg.text)
                        sub.last = msg.id
            finally:
                sub.busy = False
            sub.active_at = time.monotonic()
    finally:
        hub.unsubscribe(sub)


async def _catch_up(
    conn: psycopg.AsyncConnection[Any], hub: EventHub, send: Send, since: int | None, flt: Filter
) -> int:
    if since is not None and since >= 0:
        mark = await events.watermark(conn)
        if since <= mark:
            backlog = await events.after(conn, since, limit=hub.client_queue_max + 1)
            if len(backlog) <= hub.client_queue_max:
                last = since
                for row in backlog:
                    msg = to_message(row)
                    if flt.matches(msg, hub.ancestors):
                        await send(encode(msg))
                    last = row["id"]
                return last
        # Too far behind, or an id from the future (another database): start afresh.
    snap = await _snapshot(conn, flt, hub)
    await send(encode(snap))
    return int(snap["watermark"])
