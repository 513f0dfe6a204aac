"""Writing traffic observations in batches: COPY into a staging table, then one INSERT that
absorbs duplicates by the unique key, the device-state upsert and the dead letters, all in the
caller's transaction (one commit per batch; the caller acknowledges MQTT only after it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ioc.domain.wire import Reason, TrafficObservation

OBSERVATIONS_CHANNEL = "ioc_observations"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str
    topic: str | None
    reason: Reason
    detail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Availability:
    device_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class BatchResult:
    inserted: int
    duplicates: int
    dead_letters: int


_STAGE = """CREATE TEMP TABLE IF NOT EXISTS obs_stage (
    time timestamptz, device_id text, seq bigint, intensity integer, average_speed real,
    occupancy real, interval_s integer) ON COMMIT DELETE ROWS"""


async def write_batch(
    conn: psycopg.AsyncConnection[Any],
    observations: list[TrafficObservation],
    dead_letters: list[DeadLetter],
    *,
    availability: list[Availability] | None = None,
    received_at: datetime | None = None,
) -> BatchResult:
    inserted = 0
    async with conn.cursor() as cur:
        if observations:
            await cur.execute(_STAGE)
            async with cur.copy(
                "COPY obs_stage (time, device_id, seq, intensity, average_speed, occupancy,"
                " interval_s) FROM STDIN"
            ) as copy:
                for o in observations:
                    await copy.write_row(
                        (
                            o.observed_at,
                            o.device_id,
                            o.seq,
                            o.intensity,
                            o.average_speed,
                            o.occupancy,
                            o.interval_s,
                        )
                    )
            await cur.execute(
                """INSERT INTO traffic_observations
                       (time, device_id, seq, intensity, average_speed, occupancy, interval_s,
                        received_at)
                   SELECT time, device_id, seq, intensity, average_speed, occupancy, interval_s,
                          coalesce(%s, now())
                   FROM obs_stage
                   ON CONFLICT DO NOTHING""",
                (received_at,),
            )
            inserted = max(cur.rowcount, 0)
            # Latest reading per device; late or replayed data never moves the state backwards.
            await cur.execute(
                """INSERT INTO device_state AS s (device_id, last_seen, last_seq, last, updated_at)
                   SELECT DISTINCT ON (device_id) device_id, time, seq,
                          jsonb_build_object('speed_kmh', average_speed, 'intensity', intensity,
                                             'occupancy', occupancy, 'interval_s', interval_s),
                          now()
                   FROM obs_stage ORDER BY device_id, time DESC, seq DESC
                   ON CONFLICT (device_id) DO UPDATE
                   SET last_seen = excluded.last_seen, last_seq = excluded.last_seq,
                       last = excluded.last, updated_at = now(),
                       stuck_count = CASE WHEN s.last = excluded.last
                                          THEN s.stuck_count + 1 ELSE 0 END
                   WHERE s.last_seen IS NULL OR s.last_seen <= excluded.last_seen"""
            )
        if availability:
            latest = {a.device_id: a.online for a in availability}  # last word per device wins
            await cur.executemany(
                """INSERT INTO device_state AS s (device_id, online, availability_at)
                   VALUES (%s, %s, now())
                   ON CONFLICT (device_id) DO UPDATE
                   SET online = excluded.online, availability_at = excluded.availability_at,
                       updated_at = now()""",
                list(latest.items()),
            )
        if dead_letters:
            async with cur.copy(
                "COPY dead_letters (source, topic, reason, detail, payload) FROM STDIN"
            ) as copy:
                for d in dead_letters:
                    await copy.write_row((d.source, d.topic, str(d.reason), d.detail, d.payload))
        if observations or availability:
            # Delivered at commit: the alert engine evaluates as soon as the data is durable.
            await cur.execute("SELECT pg_notify(%s, '')", (OBSERVATIONS_CHANNEL,))
    return BatchResult(
        inserted=inserted,
        duplicates=len(observations) - inserted,
        dead_letters=len(dead_letters),
    )


async def known_devices(conn: psycopg.AsyncConnection[Any], kind: str) -> set[str]:
    async with conn.cursor() as cur:
        await cur.execute("SELECT id FROM devices WHERE kind = %s AND enabled", (kind,))
        return {r["id"] if isinstance(r, dict) else r[0] for r in await cur.fetchall()}
