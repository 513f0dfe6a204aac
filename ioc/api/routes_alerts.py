"""Operator actions on alerts and maintenance windows. Each action is one transaction with its
event, so every screen sees it through the live stream and the audit trail records who did it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from ioc.api.auth import Actor, Maintainer, Viewer, client_ip, device_area, require_area
from ioc.api.deps import Conn
from ioc.api.schemas import (
    AckIn,
    AlertOut,
    AssignIn,
    MaintenanceIn,
    MaintenanceOut,
    NoteIn,
    invalid,
)
from ioc.db import alerts as alerts_db
from ioc.db import events
from ioc.security.users import Principal, audit

router = APIRouter(prefix="/api/v1")
OPEN = ("pending", "firing", "acknowledged", "flapping", "suppressed")


async def _visible(conn: Conn, who: Principal, alert_id: int) -> dict[str, Any]:
    """The alert, or 404 when it does not exist or lies outside the user's area."""
    row = await alerts_db.get(conn, alert_id)
    if row is None or not who.sees(row["area_id"]):
        raise HTTPException(404, f"alert {alert_id} does not exist")
    return row


async def _change(
    conn: Conn,
    request: Request,
    who: Principal,
    alert_id: int,
    *,
    expected: tuple[str, ...],
    to: str,
    verb: str,
    note: str | None,
) -> dict[str, Any]:
    await _visible(conn, who, alert_id)
    async with conn.transaction():
        done = await alerts_db.transition(
            conn, alert_id, expected=expected, to=to, actor=who.username, note=note
        )
        if done is not None:
            await audit(
                conn, who.username, f"alert.{verb}", str(alert_id), client_ip(request), note=note
            )
        row = await alerts_db.get(conn, alert_id)
    assert row is not None
    if done is None:
        raise HTTPException(409, f"alert {alert_id} is {row['status']}; it cannot be {verb} now")
    return row


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
async def acknowledge(
    alert_id: int, body: AckIn, conn: Conn, request: Request, who: Actor
) -> dict[str, Any]:
    return await _change(
        conn,
        request,
        who,
        alert_id,
        expected=("firing", "flapping"),
        to="acknowledged",
        verb="acknowledged",
        note=body.note,
    )


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut)
async def resolve(
    alert_id: int, body: AckIn, conn: Conn, request: Request, who: Actor
) -> dict[str, Any]:
    """Close an alert by hand (the engine opens a new one if the problem is still there)."""
    return await _change(
        conn,
        request,
        who,
        alert_id,
        expected=OPEN,
        to="resolved",
        verb="resolved",
        note=body.note,
    )


@router.post("/alerts/{alert_id}/assign", response_model=AlertOut)
async def assign(
    alert_id: int, body: AssignIn, conn: Conn, request: Request, who: Actor
) -> dict[str, Any]:
    await _visible(conn, who, alert_id)
    async with conn.transaction():
        row = await alerts_db.get(conn, alert_id)
        assert row is not None
        if row["status"] == "resolved":
            raise HTTPException(409, f"alert {alert_id} is resolved; it cannot be assigned")
        await alerts_db.transition(
            conn,
            alert_id,
            expected=(row["status"],),
            to=row["status"],
            kind="alert.assigned",
            actor=who.username,
            assignee=body.assignee,
        )
        await audit(
            conn,
            who.username,
            "alert.assign",
            str(alert_id),
            client_ip(request),
            assignee=body.assignee,
        )
        out = await alerts_db.get(conn, alert_id)
    assert out is not None
    return out


@router.post("/alerts/{alert_id}/notes", response_model=AlertOut)
async def add_note(
    alert_id: int, body: NoteIn, conn: Conn, request: Request, who: Actor
) -> dict[str, Any]:
    await _visible(conn, who, alert_id)
    async with conn.transaction():
        done = await alerts_db.add_note(conn, alert_id, actor=who.username, note=body.note)
        await audit(conn, who.username, "alert.note", str(alert_id), client_ip(request))
        row = await alerts_db.get(conn, alert_id)
    if done is None or row is None:
        raise HTTPException(404, f"alert {alert_id} does not exist")
    return row


@router.get("/alerts/{alert_id}/history")
async def history(alert_id: int, conn: Conn, who: Viewer) -> list[dict[str, Any]]:
    """The audit trail of one alert: every transition, who, when, and notes."""
    await _visible(conn, who, alert_id)
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
    conn: Conn, who: Viewer, active: bool = Query(True, description="only windows not yet over")
) -> list[dict[str, Any]]:
    """Maintenance windows of the user's area (a window on an area above it counts too)."""
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT m.* FROM maintenance m LEFT JOIN devices d ON d.id = m.device_id
               WHERE (NOT %(active)s OR (m.cancelled_at IS NULL AND m.ends_at > now()))
                 AND (%(all)s OR d.area_id = ANY(%(areas)s) OR m.area_id = ANY(%(areas)s)
                      OR m.area_id IN (SELECT ancestor_id FROM area_closure
                                       WHERE area_id = %(mine)s))
               ORDER BY m.starts_at DESC LIMIT 500""",
            {"active": active, "all": who.province, "areas": list(who.areas), "mine": who.area_id},
        )
        return list(await cur.fetchall())


@router.post("/maintenance", response_model=MaintenanceOut, status_code=201)
async def start_maintenance(
    body: MaintenanceIn, conn: Conn, request: Request, who: Maintainer
) -> dict[str, Any]:
    if (body.device_id is None) == (body.area_id is None):
        raise invalid("body", "device_id", "give exactly one of device_id or area_id")
    if body.device_id is not None:
        require_area(who, await device_area(conn, body.device_id), f"device {body.device_id}")
    else:
        require_area(who, body.area_id)
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
                "actor": who.username,
            },
        )
        row = await cur.fetchone()
        if row is None:
            raise invalid(
                "body", "ends_at", "unknown device or area, or the window ends before it starts"
            )
        await events.append(
            conn,
            kind="maintenance.started",
            payload={"maintenance_id": row["id"], "reason": body.reason},
            device_id=body.device_id,
            area_id=body.area_id,
            actor=who.username,
        )
        await audit(
            conn,
            who.username,
            "maintenance.start",
            str(row["id"]),
            client_ip(request),
            device_id=body.device_id,
            area_id=body.area_id,
            ends_at=body.ends_at.isoformat(),
            reason=body.reason,
        )
    return dict(row)


@router.delete("/maintenance/{maintenance_id}", response_model=MaintenanceOut)
async def end_maintenance(
    maintenance_id: int, conn: Conn, request: Request, who: Maintainer
) -> dict[str, Any]:
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            """SELECT m.area_id, d.area_id AS device_area FROM maintenance m
               LEFT JOIN devices d ON d.id = m.device_id WHERE m.id = %s""",
            (maintenance_id,),
        )
        target = await cur.fetchone()
        if target is None or not who.sees(target["area_id"] or target["device_area"]):
            raise HTTPException(404, f"no open maintenance window {maintenance_id}")
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
            actor=who.username,
        )
        await audit(conn, who.username, "maintenance.end", str(maintenance_id), client_ip(request))
    return dict(row)
