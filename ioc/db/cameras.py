"""Cameras in the database: seeding, leases, health rows, state changes, thumbnails, baselines.

Leases: each camera has one row in ``camera_leases``. A worker heartbeats in ``camera_workers``
and, in one transaction, renews its own leases, gives back what is above its fair share
(ceil(cameras / live workers) in its pool) and takes free or expired ones up to it, with a
conditional UPDATE ... RETURNING, so two workers never hold one camera. A worker that dies simply
stops renewing: its leases expire and the others take them.

Writes are fenced: health rows and state changes are written only for cameras whose lease the
writer holds at commit time (the lease row is read FOR SHARE, so a takeover waits for us).
"""

from __future__ import annotations

import math
import os
import random
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from ioc.db import events
from ioc.domain.camera import OK, SEVERITY, Baseline
from ioc.domain.geo import Geography

SITES = ("Ngã tư", "Cổng", "Chợ", "Quảng trường", "Cầu", "Bến xe")
POOL = "coalesce(d.metadata->>'pool', 'default')"


def camera_id(index: int, prefix: str = "cam-") -> str:
    return f"{prefix}{index:04d}"


def _reject_credentials(url: str) -> None:
    if urlsplit(url).username is not None or "@" in urlsplit(url).netloc:
        raise ValueError("the camera URL must not carry credentials (they come from config)")


async def seed_cameras(
    conn: psycopg.AsyncConnection[Any],
    geo: Geography,
    count: int,
    seed: int,
    rtsp_base_url: str,
    *,
    pool: str = "default",
    id_prefix: str = "cam-",
    expected_fps: float | None = None,
) -> list[str]:
    """Register cameras ``cam-0001..`` (paths ``/cam1..``) over the leaf areas. Idempotent.

    ``rtsp_base_url`` is e.g. ``rtsp://127.0.0.1:58554``; it must not carry credentials.
    """
    _reject_credentials(rtsp_base_url)
    base = rtsp_base_url.rstrip("/")
    leaves = geo.leaves()
    if not leaves or count <= 0:
        return []
    rng = random.Random(seed * 7919 + 5)
    rows = []
    for i in range(1, count + 1):
        area = leaves[(i - 1) % len(leaves)]
        r_km = area.radius_km * 0.5 * math.sqrt(rng.random())
        theta = rng.random() * 2 * math.pi
        lat = area.lat + r_km * math.sin(theta) / 110.574
        lon = area.lon + r_km * math.cos(theta) / (111.320 * math.cos(math.radians(area.lat)))
        meta: dict[str, Any] = {"rtsp_url": f"{base}/cam{i}", "rtsp_path": f"/cam{i}", "pool": pool}
        if expected_fps:
            meta["fps"] = expected_fps
        name = f"{rng.choice(SITES)} – {area.name} #{(i - 1) // len(leaves) + 1}"
        rows.append(
            (camera_id(i, id_prefix), name, area.id, round(lat, 6), round(lon, 6), Jsonb(meta))
        )
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata)
               VALUES (%s, 'camera', %s, %s, %s, %s, %s)
               ON CONFLICT (id) DO UPDATE SET name = excluded.name, area_id = excluded.area_id,
                 lat = excluded.lat, lon = excluded.lon, metadata = excluded.metadata""",
            rows,
        )
        await cur.execute(
            "INSERT INTO camera_leases (device_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
            ([r[0] for r in rows],),
        )
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------- leases ---


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class LeaseCycle:
    mine: list[str]  # cameras this worker holds now
    taken_over: list[str]  # of those, taken from another worker whose lease had expired
    unowned: int  # enabled cameras of the pool that no live lease holds, after this cycle


async def lease_cycle(
    conn: psycopg.AsyncConnection[Any], *, worker_id: str, pool: str, ttl_s: float
) -> list[str]:
    """Heartbeat, then renew / give back / take leases up to the fair share. Returns the
    cameras this worker holds now. One transaction."""
    cycle = await lease_cycle_detail(conn, worker_id=worker_id, pool=pool, ttl_s=ttl_s)
    return cycle.mine


async def lease_cycle_detail(
    conn: psycopg.AsyncConnection[Any], *, worker_id: str, pool: str, ttl_s: float
) -> LeaseCycle:
    """:func:`lease_cycle`, also telling the takeovers and the cameras left unowned."""
    ttl = f"{ttl_s} seconds"
    taken_over: list[str] = []
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            """INSERT INTO camera_workers (worker_id, pool, hostname, pid, expires_at)
               VALUES (%s, %s, %s, %s, now() + %s::interval)
               ON CONFLICT (worker_id) DO UPDATE SET pool = excluded.pool,
                 heartbeat_at = now(), expires_at = excluded.expires_at""",
            (worker_id, pool, socket.gethostname(), os.getpid(), ttl),
        )
        await cur.execute(
            f"""INSERT INTO camera_leases (device_id)
                SELECT d.id FROM devices d WHERE d.kind = 'camera' AND {POOL} = %s
                ON CONFLICT DO NOTHING""",
            (pool,),
        )
        await cur.execute(
            "SELECT count(*) AS n FROM camera_workers WHERE pool = %s AND expires_at > now()",
            (pool,),
        )
        live = max(1, _n(await cur.fetchone()))
        await cur.execute(
            f"SELECT count(*) AS n FROM devices d WHERE d.kind = 'camera' AND d.enabled AND {POOL} = %s",
            (pool,),
        )
        share = math.ceil(_n(await cur.fetchone()) / live)
        # Renew what is still mine (and still an enabled camera of this pool).
        await cur.execute(
            f"""UPDATE camera_leases l SET expires_at = now() + %s::interval
                FROM devices d
                WHERE d.id = l.device_id AND l.holder = %s AND d.enabled AND {POOL} = %s
                RETURNING l.device_id""",
            (ttl, worker_id, pool),
        )
        mine = sorted(_col(await cur.fetchall()))
        give_back = mine[share:]
        mine = mine[:share]
        await cur.execute(
            """UPDATE camera_leases SET holder = NULL, expires_at = '-infinity'
               WHERE holder = %s AND NOT (device_id = ANY(%s))""",
            (worker_id, mine),
        )
        if len(mine) < share and not give_back:
            await cur.execute(
                f"""WITH free AS (
                        SELECT c.device_id, c.holder AS was
                        FROM camera_leases c JOIN devices d ON d.id = c.device_id
                        WHERE d.kind = 'camera' AND d.enabled AND {POOL} = %(pool)s
                          AND (c.holder IS NULL OR c.expires_at < now())
                        ORDER BY c.device_id LIMIT %(n)s FOR UPDATE OF c SKIP LOCKED)
                    UPDATE camera_leases l
                    SET holder = %(me)s, expires_at = now() + %(ttl)s::interval,
                        acquired_at = now(), generation = l.generation + 1
                    FROM free
                    WHERE l.device_id = free.device_id
                      AND (l.holder IS NULL OR l.expires_at < now() OR l.holder = %(me)s)
                    RETURNING l.device_id, free.was""",
                {"me": worker_id, "ttl": ttl, "pool": pool, "n": share - len(mine)},
            )
            taken = [
                (r["device_id"], r["was"]) if isinstance(r, dict) else (r[0], r[1])
                for r in await cur.fetchall()
            ]
            mine = sorted(mine + [d for d, _ in taken])
            taken_over = sorted(d for d, was in taken if was not in (None, worker_id))
        await cur.execute(
            f"""SELECT count(*) AS n FROM camera_leases l JOIN devices d ON d.id = l.device_id
                WHERE d.kind = 'camera' AND d.enabled AND {POOL} = %s
                  AND (l.holder IS NULL OR l.expires_at < now())""",
            (pool,),
        )
        unowned = _n(await cur.fetchone())
    return LeaseCycle(mine, taken_over, unowned)


async def retire_worker(conn: psycopg.AsyncConnection[Any], worker_id: str) -> None:
    """An orderly stop: give every lease back at once, so the others need not wait."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "UPDATE camera_leases SET holder = NULL, expires_at = '-infinity' WHERE holder = %s",
            (worker_id,),
        )
        await cur.execute("DELETE FROM camera_workers WHERE worker_id = %s", (worker_id,))


async def holders(
    conn: psycopg.AsyncConnection[Any], device_ids: list[str]
) -> dict[str, str | None]:
    """Current live holder per camera (None when free or expired)."""
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT device_id, CASE WHEN expires_at > now() THEN holder END AS holder
               FROM camera_leases WHERE device_id = ANY(%s)""",
            (device_ids,),
        )
        return {r["device_id"]: r["holder"] for r in await cur.fetchall()}


# ----------------------------------------------------------------- cameras to watch ---


@dataclass(frozen=True)
class CameraConfig:
    device_id: str
    area_id: str
    name: str
    url: str | None
    expected_fps: float | None
    baseline: Baseline | None


async def load_cameras(
    conn: psycopg.AsyncConnection[Any], device_ids: list[str]
) -> list[CameraConfig]:
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT d.id, d.area_id, d.name, d.metadata, b.meta, b.reference
               FROM devices d LEFT JOIN camera_baselines b ON b.device_id = d.id
               WHERE d.id = ANY(%s) ORDER BY d.id""",
            (device_ids,),
        )
        rows = await cur.fetchall()
    out = []
    for r in rows:
        meta = r["metadata"] or {}
        baseline = None
        if r["meta"] is not None:
            try:
                baseline = Baseline.from_record(r["meta"], bytes(r["reference"]))
            except (KeyError, ValueError):
                baseline = None  # stored by another version: learn again
        fps = meta.get("fps")
        out.append(
            CameraConfig(
                r["id"],
                r["area_id"],
                r["name"],
                meta.get("rtsp_url"),
                float(fps) if fps else None,
                baseline,
            )  # fmt: skip
        )
    return out


# -------------------------------------------------------------------- health writes ---


@dataclass(frozen=True)
class CameraState:
    device_id: str
    status: str
    reasons: list[dict[str, Any]]
    metrics: dict[str, Any]
    last_seen: datetime | None
    at: datetime


async def record(
    conn: psycopg.AsyncConnection[Any],
    *,
    worker_id: str,
    states: list[CameraState],
    health_rows: bool,
) -> list[int]:
    """Write state (and, when ``health_rows``, the health rows) for the cameras this worker
    still holds; append a ``camera.<status>`` event for each status change, in the same
    transaction. Returns the new event ids."""
    if not states:
        return []
    event_ids: list[int] = []
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            """SELECT l.device_id, d.area_id, s.last->>'status' AS status
               FROM camera_leases l JOIN devices d ON d.id = l.device_id
               LEFT JOIN device_state s ON s.device_id = l.device_id
               WHERE l.device_id = ANY(%s) AND l.holder = %s AND l.expires_at > now()
               FOR SHARE OF l""",
            ([s.device_id for s in states], worker_id),
        )
        held = {r["device_id"]: r for r in await cur.fetchall()}
        mine = [s for s in states if s.device_id in held]
        if not mine:
            return []
        if health_rows:
            await cur.executemany(
                """INSERT INTO camera_health (time, device_id, connected, fps, frozen, black, blur,
                                              tamper, scene_shift, status, reasons)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (device_id, time) DO NOTHING""",
                [_health_row(s) for s in mine],
            )
        await cur.executemany(
            """INSERT INTO device_state (device_id, last_seen, last)
               VALUES (%(id)s, coalesce(%(seen)s, now()), %(last)s)
               ON CONFLICT (device_id) DO UPDATE
               SET last_seen = coalesce(%(seen)s, device_state.last_seen),
                   last = excluded.last, updated_at = now()""",
            [
                {"id": s.device_id, "seen": s.last_seen, "last": Jsonb(_last(s, worker_id))}
                for s in mine
            ],
        )
        for s in mine:
            previous = held[s.device_id]["status"]
            if previous == s.status or (previous is None and s.status == OK):
                continue
            event_ids.append(
                await events.append(
                    conn,
                    kind=f"camera.{s.status}",
                    payload={
                        "device_id": s.device_id,
                        "status": s.status,
                        "previous": previous,
                        "reasons": s.reasons,
                        "fps": s.metrics.get("fps"),
                        "worker": worker_id,
                    },
                    device_id=s.device_id,
                    area_id=held[s.device_id]["area_id"],
                    severity=SEVERITY.get(s.status, "major"),
                )  # fmt: skip
            )
    return event_ids


def _health_row(s: CameraState) -> tuple[Any, ...]:
    codes = {r["code"] for r in s.reasons}
    connected = bool(s.metrics.get("connected"))
    picture = connected and s.status != "unknown"
    return (
        s.at, s.device_id, connected, s.metrics.get("fps"),
        ("frozen" in codes) if picture else None, ("black" in codes) if picture else None,
        s.metrics.get("sharpness"), ("covered" in codes) if picture else None,
        ("moved" in codes) if picture else None, s.status, Jsonb(s.reasons),
    )  # fmt: skip


def _last(s: CameraState, worker_id: str) -> dict[str, Any]:
    return {"kind": "camera", "status": s.status, "reasons": s.reasons, **s.metrics,
            "worker": worker_id, "checked_at": s.at.isoformat()}  # fmt: skip


# ------------------------------------------------------------ thumbnails, baselines ---


async def upsert_thumbnail(
    conn: psycopg.AsyncConnection[Any], device_id: str, jpeg: bytes, taken_at: datetime,
    width: int, height: int, *, history_every_s: float | None = None,
) -> None:  # fmt: skip
    """Replace the camera's one latest thumbnail. Pictures of people are personal data: by
    default nothing else is kept. With ``history_every_s`` (``IOC_THUMBNAIL_HISTORY_HOURS`` > 0)
    the picture also goes to ``camera_thumbnail_history`` when that camera has none from the
    last ``history_every_s`` seconds (decided in the database, so it holds across workers);
    ``ioc rollups`` drops its chunks after the configured hours (ioc/rollups/retention.py)."""
    latest = """INSERT INTO camera_thumbnails (device_id, taken_at, width, height, jpeg)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (device_id) DO UPDATE SET taken_at = excluded.taken_at,
             width = excluded.width, height = excluded.height, jpeg = excluded.jpeg
           WHERE camera_thumbnails.taken_at < excluded.taken_at"""
    if history_every_s is None:
        await conn.execute(latest, (device_id, taken_at, width, height, jpeg))
        return
    async with conn.transaction():
        await conn.execute(latest, (device_id, taken_at, width, height, jpeg))
        await conn.execute(
            """INSERT INTO camera_thumbnail_history (device_id, taken_at, width, height, jpeg)
               SELECT %(id)s, %(at)s, %(w)s, %(h)s, %(jpeg)s
               WHERE NOT EXISTS (
                 SELECT 1 FROM camera_thumbnail_history
                 WHERE device_id = %(id)s
                   AND taken_at > %(at)s - make_interval(secs => %(every)s)
                   AND taken_at <= %(at)s)
               ON CONFLICT DO NOTHING""",
            {"id": device_id, "at": taken_at, "w": width, "h": height, "jpeg": jpeg,
             "every": history_every_s},
        )  # fmt: skip


async def latest_thumbnail(
    conn: psycopg.AsyncConnection[Any], device_id: str
) -> tuple[bytes, datetime] | None:
    """The camera's latest JPEG and when it was taken (serve it to signed-in users only)."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT jpeg, taken_at FROM camera_thumbnails WHERE device_id = %s", (device_id,)
        )
        row = await cur.fetchone()
    if row is None:
        return None
    jpeg, taken = (row["jpeg"], row["taken_at"]) if isinstance(row, dict) else row
    return bytes(jpeg), taken


async def save_baseline(
    conn: psycopg.AsyncConnection[Any], device_id: str, baseline: Baseline
) -> None:
    meta, reference = baseline.to_record()
    await conn.execute(
        """INSERT INTO camera_baselines (device_id, meta, reference) VALUES (%s, %s, %s)
           ON CONFLICT (device_id) DO UPDATE SET meta = excluded.meta,
             reference = excluded.reference, learned_at = now()""",
        (device_id, Jsonb(meta), reference),
    )


async def forget_baseline(conn: psycopg.AsyncConnection[Any], device_id: str) -> None:
    """After a camera is deliberately re-aimed: the next worker to hold it learns anew."""
    await conn.execute("DELETE FROM camera_baselines WHERE device_id = %s", (device_id,))


def _n(row: Any) -> int:
    return int(row["n"] if isinstance(row, dict) else row[0])


def _col(rows: list[Any]) -> list[str]:
    return [r["device_id"] if isinstance(r, dict) else r[0] for r in rows]
