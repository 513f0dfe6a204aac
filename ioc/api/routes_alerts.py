"""Operator actions on alerts and maintenance windows. Each action is one transaction with its
event, so every screen sees it through the live stream and the audit trail records who did it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from ioc.api.deps import Conn
from ioc.api.schemas import AckIn, AlertOut, AssignIn, MaintenanceIn, MaintenanceOut, NoteIn
from ioc.db import alerts as alerts_db
from ioc.db import events

router = APIRouter(prefix="/api/v1")
ACTOR = "operator"  # until sign-in exists (security issue): the signed-in user goes here
OPEN = ("pending", "firing", "acknowledged", "flapping", "suppressed")


async def _change(
    conn: Conn, alert_id: int, *, expected: tuple[str, ...], to: str, verb: str, **kw: Any
) -> dict[str, Any]:
    async with conn.transaction():
        done = await alerts_db.transition(conn, alert_id, expected=expected, to=to, **kw)
        row = await alerts_db.get(conn, alert_id)
    if row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    if done is None:
        raise HTTPException(409, f"alert {alert_id} is {row['status']}; it cannot be {verb} now")
    return row


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
async def acknowledge(alert_id: int, body: AckIn, conn: Conn) -> dict[str, Any]:
    return await _change(
        conn,
        alert_id,
        expected=("firing", "flapping"),
        to="acknowledged",
        verb="acknowledged",
        actor=ACTOR,
        note=body.note,
    )


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut)
async def resolve(alert_id: int, body: AckIn, conn: Conn) -> dict[str, Any]:
    """Close an alert by hand (the engine opens a new one if the problem is still there)."""
    return await _change(
        conn,
        alert_id,
        expected=OPEN,
        to="resolved",
        verb="resolved",
        actor=ACTOR,
        note=body.note,
    )


@router.post("/alerts/{alert_id}/assign", response_model=AlertOut)
async def assign(alert_id: int, body: AssignIn, conn: Conn) -> dict[str, Any]:
    async with conn.transaction():
        row = await alerts_db.get(conn, alert_id)
        if row is None:
            raise HTTPException(404, f"alert {alert_id} does not exist")
        if row["status"] == "resolved":
            raise HTTPException(409, f"alert {alert_id} is resolved; it cannot be assigned")
        await alerts_db.transition(
            conn,
            alert_id,
            expected=(row["status"],),
            to=row["status"],
            kind="alert.assigned",
            actor=ACTOR,
            assignee=body.assignee,
        )
        out = await alerts_db.get(conn, alert_id)
    assert out is not None
    return out


@router.post("/alerts/{alert_id}/notes", response_model=AlertOut)
async def add_note(alert_id: int, body: NoteIn, conn: Conn) -> dict[str, Any]:
    async with conn.transaction():
        done = await alerts_db.add_note(conn, alert_id, actor=ACTOR, note=body.note)
        row = await alerts_db.get(conn, alert_id)
    if done is None or row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    return row


@router.get("/alerts/{alert_id}/history")
async def history(alert_id: int, conn: Conn) -> list[dict[str, Any]]:
    """The audit trail of one alert: every transition, who, when, and notes."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT id, time, kind, actor, payload->>'note' AS note, payload->>'status' AS status,"
            " payload->>'severity' AS severity FROM events WHERE alert_id = %s ORDER BY id",
            (alert_id,),
        )
        rows = await cur.fetchall()
    if not rows:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    return [dict(r) for r in rows]


@router.get("/maintenance", response_model=list[MaintenanceOut])
async def list_maintenance(
    conn: Conn, active: bool = Query(True, description="only windows not yet over")
) -> list[dict[str, Any]]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT * FROM maintenance WHERE NOT %s OR (cancelled_at IS NULL AND ends_at > now())"
            " ORDER BY starts_at DESC LIMIT 500",
            (active,),
        )
        return list(await cur.fetchall())


@router.post("/maintenance", response_model=MaintenanceOut, status_code=201)
async def start_maintenance(body: MaintenanceIn, conn: Conn) -> dict[str, Any]:
    if (body.device_id is None) == (body.area_id is None):
        raise HTTPException(422, "give exactly one of device_id or area_id")
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            """INSERT INTO maintenance (device_id, area_id, starts_at, ends_at, reason, created_by)
               SELECT %(device)s, %(area)s, coalesce(%(start)s, now()), %(end)s, %(reason)s,
                      %(actor)s
               WHERE (%(device)s::text IS NULL OR EXISTS (SELECT 1 FROM devices WHERE id = %(device)s))
                 AND (%(area)s::text IS NULL OR EXISTS (SELECT 1 FROM areas WHERE id = %(area)s))
                 AND %(end)s > coalesce(%(start)s, now())
               RETURNING *""",
            {
                "device": body.device_id,
                "area": body.area_id,
                "start": body.starts_at,
                "end": body.ends_at,
                "reason": body.reason,
                "actor": ACTOR,
            },
        )
        row = await cur.fetchone()
        if row is None:
            raise HTTPException(422, "unknown device or area, or the window ends before it starts")
        await events.append(
            conn,
            kind="maintenance.started",
            payload={"maintenance_id": row["id"], "reason": body.reason},
            device_id=body.device_id,
            area_id=body.area_id,
            actor=ACTOR,
        )
    return dict(row)


@router.delete("/maintenance/{maintenance_id}", response_model=MaintenanceOut)
async def end_maintenance(maintenance_id: int, conn: Conn) -> dict[str, Any]:
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "UPDATE maintenance SET cancelled_at = now() WHERE id = %s AND cancelled_at IS NULL"
            " RETURNING *",
            (maintenance_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise HTTPException(404, f"no open maintenance window {maintenance_id}")
        await events.append(
            conn,
            kind="maintenance.ended",
            payload={"maintenance_id": maintenance_id},
            device_id=row["device_id"],
            area_id=row["area_id"],
            actor=ACTOR,
        )
    return dict(row)
