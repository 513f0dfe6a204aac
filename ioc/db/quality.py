"""Data-quality figures computed exactly from the stored rows, whichever worker stored them.

Per-device sequence numbers make loss visible: in sequence order, every jump of more than one is
a gap (a drop back to a smaller number is a device restart, not a gap). Ordered by arrival
instead, a reading made before one that was stored earlier is out of order (arrival order is
known per batch: ``received_at`` is the batch's commit time).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

LATE_AFTER = timedelta(seconds=60)


async def sequence_report(
    conn: psycopg.AsyncConnection[Any], *, since: timedelta, device_ids: list[str] | None = None
) -> list[dict[str, Any]]:
    async with conn.cursor() as cur:
        await cur.execute(
            """WITH w AS (
                   SELECT device_id, seq, time, received_at,
                          lag(seq) OVER (PARTITION BY device_id ORDER BY time, seq) AS prev_seq,
                          max(time) OVER (PARTITION BY device_id ORDER BY received_at, time
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                              AS newest_before
                   FROM traffic_observations
                   WHERE time > now() - %(since)s
                     AND (%(ids)s::text[] IS NULL OR device_id = ANY(%(ids)s)))
               SELECT device_id, count(*)::int AS readings,
                      coalesce(sum(seq - prev_seq - 1) FILTER (WHERE seq > prev_seq + 1), 0)::int
                          AS gaps,
                      count(*) FILTER (WHERE time < newest_before)::int AS out_of_order,
                      count(*) FILTER (WHERE received_at - time > %(late)s)::int AS late,
                      count(*) FILTER (WHERE seq < prev_seq)::int AS resets
               FROM w GROUP BY device_id ORDER BY device_id""",
            {"since": since, "ids": device_ids, "late": LATE_AFTER},
        )
        return list(await cur.fetchall())
