"""Role heartbeats (table ``role_heartbeats``): the newest proof that a role's loop works."""

from __future__ import annotations

import os
import socket
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

INSTANCE = f"{socket.gethostname()}:{os.getpid()}"


async def beat(
    conn: psycopg.AsyncConnection[Any], role: str, detail: dict[str, Any] | None = None
) -> None:
    """Note that ``role`` did its work just now (the database's clock)."""
    await conn.execute(
        """INSERT INTO role_heartbeats (role, at, instance, detail)
           VALUES (%s, now(), %s, %s)
           ON CONFLICT (role) DO UPDATE SET at = excluded.at, instance = excluded.instance,
                                            detail = excluded.detail""",
        (role, INSTANCE, Jsonb(detail or {})),
    )
