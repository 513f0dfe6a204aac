"""Retention by dropping whole chunks (``drop_chunks``): raw readings after 30 days, rollups
after 2 years (``IOC_ROLLUP_*_DAYS``), past camera thumbnails after
``IOC_THUMBNAIL_HISTORY_HOURS`` (0: no history, every past chunk goes). Works on both
TimescaleDB editions; a chunk goes only when all of it is older than the limit, so nothing
younger than the limit is ever lost.

A camera's latest thumbnail (one row per camera, a plain table) is deleted once it is older than
the raw limit: a camera that stopped sending does not keep a picture of people for ever.

The maintainer never recomputes a bucket older than the raw limit (maintain.py), so dropping
raw chunks never destroys a rollup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import structlog

from ioc.rollups.config import RollupSettings

log = structlog.get_logger("ioc.rollups")

RAW_TABLES = ("traffic_observations", "camera_health")
THUMBNAIL_HISTORY = "camera_thumbnail_history"
ROLLUP_TABLES = (
    "traffic_sensor_1m",
    "traffic_sensor_15m",
    "traffic_sensor_1h",
    "traffic_area_1m",
    "traffic_area_15m",
    "traffic_area_1h",
    "availability_area_5m",
    "availability_area_1h",
)
CAGGS = ("traffic_sensor_1m_ca", "traffic_sensor_15m_ca", "traffic_sensor_1h_ca")


@dataclass(frozen=True, slots=True)
class Policy:
    relation: str
    keep: timedelta


def policies(settings: RollupSettings) -> list[Policy]:
    raw = timedelta(days=settings.raw_retention_days)
    rollups = timedelta(days=settings.retention_days)
    minute = timedelta(days=settings.retention_1m_days or settings.retention_days)
    out = [Policy(t, raw) for t in RAW_TABLES]
    out += [Policy(t, minute if t.endswith("_1m") else rollups) for t in ROLLUP_TABLES]
    out += [Policy(t, minute if t.endswith("_1m_ca") else rollups) for t in CAGGS]
    out.append(Policy(THUMBNAIL_HISTORY, timedelta(hours=settings.thumbnail_history_hours)))
    return out


async def apply(
    conn: psycopg.AsyncConnection[Any], settings: RollupSettings
) -> dict[str, list[str]]:
    """Drop every chunk wholly older than its relation's limit. Returns the dropped chunks
    per relation (relations that do not exist here, e.g. the continuous aggregates on the
    Apache edition, are skipped)."""
    dropped: dict[str, list[str]] = {}
    for p in policies(settings):
        async with conn.cursor() as cur:
            await cur.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (p.relation,))
            row = await cur.fetchone()
            present = row["present"] if isinstance(row, dict) else row[0] if row else False
            if not present:
                continue
            await cur.execute(
                "SELECT drop_chunks(%s::regclass, older_than => now() - %s::interval) AS c",
                (p.relation, p.keep),
            )
            names = [r["c"] if isinstance(r, dict) else r[0] for r in await cur.fetchall()]
        if names:
            dropped[p.relation] = [str(n) for n in names]
            log.info("retention dropped chunks", relation=p.relation, chunks=len(names))
    await expire_latest_thumbnails(conn, timedelta(days=settings.raw_retention_days))
    return dropped


async def expire_latest_thumbnails(conn: psycopg.AsyncConnection[Any], keep: timedelta) -> int:
    """Delete the latest thumbnails taken more than ``keep`` ago (cameras that stopped sending
    pictures). Returns how many went."""
    async with conn.cursor() as cur:
        await cur.execute(
            "DELETE FROM camera_thumbnails WHERE taken_at < now() - %s::interval", (keep,)
        )
        gone = cur.rowcount
    if gone:
        log.info("retention deleted stale latest thumbnails", thumbnails=gone)
    return max(gone, 0)
