"""Devices with their current status, as the map, the REST API and stream snapshots show them."""

from __future__ import annotations

from typing import Any

import psycopg

from ioc.domain.device_status import device_status

_COLUMNS = ("id", "name", "kind", "area_id", "parent_id", "lat", "lon", "last_seen")


async def device_states(
    conn: psycopg.AsyncConnection[Any], *, area_id: str | None = None
) -> list[dict[str, Any]]:
    """Every enabled device of ``area_id``'s subtree (all when None), status computed now."""
    async with conn.cursor() as cur:
        await cur.execute(
            """WITH RECURSIVE sub AS (
                   SELECT id FROM areas WHERE %(area)s::text IS NULL OR id = %(area)s
                   UNION SELECT a.id FROM areas a JOIN sub ON a.parent_id = sub.id
                     WHERE %(area)s::text IS NOT NULL)
               SELECT d.id, d.name, d.kind, d.area_id, d.parent_id, d.lat, d.lon, s.last_seen,
                      s.last, s.online, coalesce(s.stuck_count, 0) AS stuck_count,
                      EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = d.id
                              AND a.status IN ('firing', 'acknowledged', 'flapping'))
                          AS alerting,
                      now() AS now
               FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
               WHERE d.enabled AND d.area_id IN (SELECT id FROM sub)
               ORDER BY d.id""",
            {"area": area_id},
        )
        rows = await cur.fetchall()
    out = []
    for r in rows:
        last = r["last"] or None
        st = device_status(
            kind=r["kind"],
            now=r["now"],
            last_seen=r["last_seen"],
            online=r["online"],
            stuck_count=r["stuck_count"],
            last=last,
            alerting=r["alerting"],
        )
        out.append(
            {k: r[k] for k in _COLUMNS}
            | {
                "last": last,
                "online": r["online"],
                "status": st.status,
                "reason": st.reason,
                "reason_en": st.reason_en,
            }
        )
    return out
