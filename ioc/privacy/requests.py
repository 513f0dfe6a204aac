"""Answering a data subject's request about camera pictures (docs/privacy.md): which pictures of
a camera are held for a time, who viewed that camera's pictures, and deleting them.

Each action is written to ``audit_log`` (``privacy.pictures``, ``privacy.views``,
``privacy.purge``) in the same transaction as what it reads or deletes, with the actor
``cli:<os user>``: handling personal data is itself traceable. No picture bytes ever go to the
audit log or to a log line; only counts, times and the camera id.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from ioc.privacy import PrivacyError
from ioc.security.users import audit

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Picture:
    taken_at: datetime
    kept_as: str  # "latest" or "history"
    width: int
    height: int
    size: int  # bytes of JPEG


@dataclass(frozen=True, slots=True)
class Purged:
    latest: int
    history: int


async def _camera(conn: Conn, camera_id: str) -> None:
    async with conn.cursor() as cur:
        await cur.execute("SELECT kind FROM devices WHERE id = %s", (camera_id,))
        row = await cur.fetchone()
    if row is None:
        raise PrivacyError(f"no device {camera_id!r} (camera ids are like cam-0001)")
    kind = row["kind"]
    if kind != "camera":
        raise PrivacyError(f"{camera_id!r} is a {kind}, not a camera")


_PICTURES = """
    SELECT taken_at, 'latest' AS kept_as, width, height, octet_length(jpeg) AS size{jpeg}
    FROM camera_thumbnails
    WHERE device_id = %(id)s AND (%(start)s::timestamptz IS NULL OR taken_at >= %(start)s)
      AND (%(end)s::timestamptz IS NULL OR taken_at < %(end)s)
    UNION ALL
    SELECT taken_at, 'history', width, height, octet_length(jpeg){jpeg}
    FROM camera_thumbnail_history
    WHERE device_id = %(id)s AND (%(start)s::timestamptz IS NULL OR taken_at >= %(start)s)
      AND (%(end)s::timestamptz IS NULL OR taken_at < %(end)s)
    ORDER BY taken_at, kept_as"""


async def pictures(
    conn: Conn,
    camera_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    actor: str,
    save_to: Path | None = None,
) -> list[Picture]:
    """The pictures held of ``camera_id`` taken in [start, end): the latest, and the history
    when it is enabled. With ``save_to``, each is also written there as a JPEG file (mode 0600)
    for the request's answer. Audited as ``privacy.pictures``."""
    args = {"id": camera_id, "start": start, "end": end}
    async with conn.transaction():
        await _camera(conn, camera_id)
        async with conn.cursor() as cur:
            await cur.execute(_PICTURES.format(jpeg=", jpeg" if save_to else ""), args)
            rows = await cur.fetchall()
        found = [
            Picture(r["taken_at"], r["kept_as"], r["width"], r["height"], r["size"]) for r in rows
        ]
        files = await asyncio.to_thread(_save, save_to, camera_id, rows) if save_to else []
        await audit(
            conn, actor, "privacy.pictures", camera_id, None,
            start=_iso(start), end=_iso(end), found=len(found),
            saved_to=str(save_to) if save_to else None, files=len(files),
        )  # fmt: skip
    return found


async def views(
    conn: Conn, camera_id: str, *, start: datetime | None, end: datetime | None, actor: str
) -> list[dict[str, Any]]:
    """Who viewed ``camera_id``'s pictures in [start, end): one row per user and 10 minutes
    (``picture_views``), oldest first, with the user's display name when the user still exists.
    Audited as ``privacy.views``."""
    async with conn.transaction():
        await _camera(conn, camera_id)
        async with conn.cursor() as cur:
            await cur.execute(
                """SELECT v.bucket, v.username, coalesce(u.display_name, '') AS display_name,
                          u.role, v.views, v.first_at, v.last_at, host(v.ip) AS ip
                   FROM picture_views v LEFT JOIN users u ON u.username = v.username
                   WHERE v.device_id = %(id)s
                     AND (%(start)s::timestamptz IS NULL OR v.last_at >= %(start)s)
                     AND (%(end)s::timestamptz IS NULL OR v.first_at < %(end)s)
                   ORDER BY v.bucket, v.username""",
                {"id": camera_id, "start": start, "end": end},
            )
            rows = list(await cur.fetchall())
        await audit(
            conn, actor, "privacy.views", camera_id, None,
            start=_iso(start), end=_iso(end), rows=len(rows),
        )  # fmt: skip
    return rows


async def purge(conn: Conn, camera_id: str, *, before: datetime | None, actor: str) -> Purged:
    """Delete the pictures of ``camera_id`` taken before ``before`` (None: all of them), the
    latest and the history, with a ``privacy.purge`` audit row, in one transaction. A running
    worker stores a new latest picture at its next thumbnail: to stop pictures of a place for
    good, give the camera a privacy mask."""
    async with conn.transaction():
        await _camera(conn, camera_id)
        cond = "device_id = %(id)s AND (%(before)s::timestamptz IS NULL OR taken_at < %(before)s)"
        args = {"id": camera_id, "before": before}
        async with conn.cursor() as cur:
            await cur.execute(f"DELETE FROM camera_thumbnails WHERE {cond}", args)
            latest = max(cur.rowcount, 0)
            await cur.execute(f"DELETE FROM camera_thumbnail_history WHERE {cond}", args)
            history = max(cur.rowcount, 0)
        await audit(
            conn, actor, "privacy.purge", camera_id, None,
            before=_iso(before), latest=latest, history=history,
        )  # fmt: skip
    return Purged(latest, history)


def _save(folder: Path, camera_id: str, rows: list[dict[str, Any]]) -> list[str]:
    """Each picture as ``<camera>-<UTC time>-<latest|history>.jpg``, readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for r in rows:
        stamp = r["taken_at"].astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = folder / f"{camera_id}-{stamp}-{r['kept_as']}.jpg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(r["jpeg"]))
        names.append(path.name)
    return names


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None
