"""The append-only events table: the audit trail and the live stream's cursor.

Every writer goes through :func:`append`. It takes a transaction-scoped advisory lock first, so
event ids become visible in exactly increasing order: a reader that has seen id N can ask for
"everything after N" and never miss one that committed late with a smaller id. The NOTIFY carries
only the id and is delivered at commit, after the row is durable.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

NOTIFY_CHANNEL = "ioc_events"
_EVENTS_LOCK = 0x10C_E7E7  # arbitrary constant shared by every event writer


async def append(
    conn: psycopg.AsyncConnection[Any],
    *,
    kind: str,
    payload: dict[str, Any],
    alert_id: int | None = None,
    device_id: str | None = None,
    area_id: str | None = None,
    severity: str | None = None,
    actor: str = "system",
) -> int:
    """Append one event inside the caller's transaction; returns its id."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (_EVENTS_LOCK,))
        await cur.execute(
            """INSERT INTO events (kind, alert_id, device_id, area_id, severity, actor, payload)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (kind, alert_id, device_id, area_id, severity, actor, Jsonb(payload)),
        )
        row = await cur.fetchone()
        assert row is not None
        event_id = int(row["id"] if isinstance(row, dict) else row[0])
        await cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(event_id)))
    return event_id


async def after(
    conn: psycopg.AsyncConnection[Any], last_id: int, *, limit: int = 1000
) -> list[dict[str, Any]]:
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT id, time, kind, alert_id, device_id, area_id, severity, actor, payload
               FROM events WHERE id > %s ORDER BY id LIMIT %s""",
            (last_id, limit),
        )
        return list(await cur.fetchall())


async def watermark(conn: psycopg.AsyncConnection[Any]) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT coalesce(max(id), 0) AS id FROM events")
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"] if isinstance(row, dict) else row[0])
