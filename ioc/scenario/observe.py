"""What the scenario runner reads from the database: the world it points at, and outcomes.

Outcomes come from the append-only ``events`` table (every alert transition, with the alert as
its payload) after the watermark taken at the start, and from ``dead_letters``: never through
the HTTP API, which needs a signed-in user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ioc.domain.fleet import make_fleet
from ioc.domain.geo import Geography
from ioc.scenario.expect import AlertEvent, DeadLetter, OpenAlert
from ioc.scenario.plan import Device, World


async def _rows(conn: psycopg.AsyncConnection[Any], sql: str, params: Any = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return list(await cur.fetchall())


def _camera_number(meta: dict[str, Any] | None) -> int | None:
    path = str((meta or {}).get("rtsp_path") or "")
    if path.startswith("/cam") and path[4:].isdigit():
        return int(path[4:])
    return None


async def world(conn: psycopg.AsyncConnection[Any], geo: Geography, seed: int) -> World:
    """Areas and enabled devices as registered; roads from the demo fleet of the same size and
    seed as the simulator's (``IOC_SIM_SEED``), so `road:` means what the simulator does."""
    parents = {
        r["id"]: r["parent_id"] for r in await _rows(conn, "SELECT id, parent_id FROM areas")
    }
    rows = await _rows(
        conn,
        "SELECT id, kind, area_id, parent_id, metadata FROM devices WHERE enabled ORDER BY id",
    )
    sensors = sum(1 for r in rows if r["kind"] == "traffic_sensor")
    roads = {f.id: f.road for f in make_fleet(geo, sensors, seed)}
    devices = {
        r["id"]: Device(
            id=r["id"],
            kind=r["kind"],
            area_id=r["area_id"],
            parent_id=r["parent_id"],
            camera=_camera_number(r["metadata"]) if r["kind"] == "camera" else None,
            road=roads.get(r["id"]) if r["kind"] == "traffic_sensor" else None,
        )
        for r in rows
    }
    return World(parents=parents, devices=devices)


@dataclass(frozen=True)
class Marks:
    """Where the scenario's reading starts: the last event and dead letter before it."""

    event_id: int
    dead_letter_id: int


async def marks(conn: psycopg.AsyncConnection[Any]) -> Marks:
    rows = await _rows(
        conn,
        """SELECT (SELECT coalesce(max(id), 0) FROM events) AS e,
                  (SELECT coalesce(max(id), 0) FROM dead_letters) AS d""",
    )
    return Marks(int(rows[0]["e"]), int(rows[0]["d"]))


async def open_alerts(conn: psycopg.AsyncConnection[Any]) -> list[OpenAlert]:
    rows = await _rows(
        conn,
        """SELECT id, rule_id, device_id, area_id, status, started_at FROM alerts
           WHERE status <> 'resolved' ORDER BY id""",
    )
    return [OpenAlert(**r) for r in rows]


async def alert_events(conn: psycopg.AsyncConnection[Any], after_id: int) -> list[AlertEvent]:
    rows = await _rows(
        conn,
        """SELECT id, time, kind, alert_id, payload->>'rule_id' AS rule_id, device_id, area_id,
                  payload->>'status' AS status
           FROM events
           WHERE id > %s AND alert_id IS NOT NULL AND kind LIKE 'alert.%%' AND kind <> 'alert.note'
           ORDER BY id""",
        (after_id,),
    )
    return [AlertEvent(**r) for r in rows if r["rule_id"] and r["status"]]


async def dead_letters(conn: psycopg.AsyncConnection[Any], after_id: int) -> list[DeadLetter]:
    rows = await _rows(
        conn,
        """SELECT id, received_at AS time, topic, reason FROM dead_letters
           WHERE id > %s ORDER BY id LIMIT 100000""",
        (after_id,),
    )
    return [DeadLetter(**r) for r in rows]


async def recent_readings(conn: psycopg.AsyncConnection[Any], within_s: float) -> tuple[int, int]:
    """(sensors with a reading in the last ``within_s`` seconds, sensors registered)."""
    rows = await _rows(
        conn,
        """SELECT count(*) FILTER (WHERE s.last_seen > now() - make_interval(secs => %s)
                                    AND s.online IS NOT FALSE) AS fresh,
                  count(*) AS total
           FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
           WHERE d.kind = 'traffic_sensor' AND d.enabled""",
        (within_s,),
    )
    return int(rows[0]["fresh"]), int(rows[0]["total"])


async def cameras_ok(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
    """(cameras whose health is ``ok``, cameras registered)."""
    rows = await _rows(
        conn,
        """SELECT count(*) FILTER (WHERE s.last->>'status' = 'ok') AS ok, count(*) AS total
           FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
           WHERE d.kind = 'camera' AND d.enabled""",
    )
    return int(rows[0]["ok"]), int(rows[0]["total"])


def utc(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
