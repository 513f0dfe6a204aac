"""Alert rows and their transitions. Each transition and its event share one transaction.

Transitions are conditional updates (``WHERE status = <expected>``): when two engines race, one
wins and the other's update touches no row, so no event is written twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ioc.db import events

ALERT_COLUMNS = """a.id, a.rule_id, a.device_id, d.name AS device_name, d.kind AS device_kind,
    a.area_id, a.severity, a.status, a.title, a.title_en, a.value, a.started_at, a.fired_at,
    a.acknowledged_at, a.acknowledged_by, a.ack_note, a.resolved_at, a.resolved_by,
    a.resolve_note, a.updated_at, a.escalated, a.escalated_at, a.base_severity, a.suppressed_by,
    a.parent_alert_id, a.assignee"""

# Columns a transition may set besides its status (whitelist: names never come from input).
_EXTRA = {"severity", "escalated", "suppressed_by", "parent_alert_id", "last_breach_at", "assignee"}


def to_json(row: dict[str, Any]) -> dict[str, Any]:
    """An alert row as the JSON the API, events and the live stream carry."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


async def get(conn: psycopg.AsyncConnection[Any], alert_id: int) -> dict[str, Any] | None:
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts a JOIN devices d ON d.id = a.device_id "
            "WHERE a.id = %s",
            (alert_id,),
        )
        return await cur.fetchone()


async def list_alerts(
    conn: psycopg.AsyncConnection[Any],
    *,
    open_only: bool = True,
    limit: int = 500,
    areas: frozenset[str] | None = None,
) -> list[dict[str, Any]]:
    """Newest first; only alerts of ``areas`` when given."""
    where = ["a.status <> 'resolved'"] if open_only else []
    if areas is not None:
        where.append("a.area_id = ANY(%(areas)s)")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts a JOIN devices d ON d.id = a.device_id "
            f"{clause} ORDER BY a.updated_at DESC, a.id DESC LIMIT %(limit)s",
            {"limit": limit, "areas": None if areas is None else list(areas)},
        )
        return list(await cur.fetchall())


async def open_for_rule(conn: psycopg.AsyncConnection[Any], rule_id: str) -> list[dict[str, Any]]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT id, device_id, status, started_at, fired_at, escalated, suppressed_by, "
            "last_breach_at, severity FROM alerts WHERE rule_id = %s AND status <> 'resolved'",
            (rule_id,),
        )
        return list(await cur.fetchall())


async def _emit(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    kind: str,
    actor: str,
    event_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    row = await get(conn, alert_id)
    assert row is not None
    payload = to_json(row) | (event_fields or {})
    await events.append(
        conn,
        kind=kind,
        payload=payload,
        alert_id=alert_id,
        device_id=row["device_id"],
        area_id=row["area_id"],
        severity=row["severity"],
        actor=actor,
    )
    return payload


async def open_alert(
    conn: psycopg.AsyncConnection[Any],
    *,
    rule_id: str,
    device_id: str,
    severity: str,
    title: str,
    title_en: str,
    value: float | None,
    status: str,
    at: datetime | None = None,
    suppressed_by: str | None = None,
    event_fields: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Open a (rule, device) alert unless one is open already (then None: nothing happened).
    ``event_fields`` are added to the event's payload (e.g. ``correlation_id``)."""
    firing = status in ("firing", "flapping")
    parent = (
        int(suppressed_by[6:]) if suppressed_by and suppressed_by.startswith("alert:") else None
    )
    async with conn.cursor() as cur:
        await cur.execute(
            """INSERT INTO alerts (rule_id, device_id, area_id, severity, base_severity, status,
                                   title, title_en, value, started_at, fired_at, suppressed_by,
                                   parent_alert_id, last_breach_at)
               SELECT %(rule)s, d.id, d.area_id, %(sev)s, %(sev)s, %(status)s, %(title)s,
                      %(title_en)s, %(value)s, coalesce(%(at)s, now()),
                      CASE WHEN %(firing)s THEN coalesce(%(at)s, now()) END, %(suppressed_by)s,
                      %(parent)s, coalesce(%(at)s, now())
               FROM devices d WHERE d.id = %(device)s
               ON CONFLICT (rule_id, device_id) WHERE status <> 'resolved' DO NOTHING
               RETURNING id""",
            {
                "rule": rule_id,
                "device": device_id,
                "sev": severity,
                "status": status,
                "title": title,
                "title_en": title_en,
                "value": value,
                "firing": firing,
                "at": at,
                "suppressed_by": suppressed_by,
                "parent": parent,
            },
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return await _emit(conn, int(row["id"]), f"alert.{status}", "system", event_fields)


async def transition(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    *,
    expected: tuple[str, ...],
    to: str,
    actor: str = "system",
    value: float | None = None,
    note: str | None = None,
    at: datetime | None = None,
    kind: str | None = None,
    emit: bool = True,
    event_fields: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any] | None:
    """Move an alert from one of ``expected`` to ``to``; None when it was not in that state.

    ``at`` is the evaluator's clock (defaults to the database's ``now()``); ``kind`` names the
    event when it is not ``alert.<to>`` (e.g. ``alert.escalated``); ``extra`` sets whitelisted
    columns; ``emit=False`` records nothing in the events (bookkeeping only);
    ``event_fields`` are added to the event's payload.
    """
    unknown = set(extra) - _EXTRA
    if unknown:
        raise ValueError(f"not transition columns: {sorted(unknown)}")
    sets = ["status = %(to)s", "updated_at = now()", "value = coalesce(%(value)s, value)"]
    sets += [f"{col} = %({col})s" for col in extra]
    if to == "firing":
        sets.append("fired_at = coalesce(fired_at, %(at)s, now())")
    elif to == "acknowledged":
        sets += [
            "acknowledged_at = coalesce(%(at)s, now())",
            "acknowledged_by = %(actor)s",
            "ack_note = %(note)s",
        ]
    elif to == "resolved":
        sets += [
            "resolved_at = coalesce(%(at)s, now())",
            "resolved_by = %(actor)s",
            "resolve_note = %(note)s",
        ]
    if extra.get("escalated"):
        sets.append("escalated_at = coalesce(%(at)s, now())")
    async with conn.cursor() as cur:
        await cur.execute(
            f"UPDATE alerts SET {', '.join(sets)} "
            "WHERE id = %(id)s AND status = ANY(%(expected)s) RETURNING id",
            {
                "to": to,
                "value": value,
                "actor": actor,
                "note": note,
                "id": alert_id,
                "expected": list(expected),
                "at": at,
                **extra,
            },
        )
        if await cur.fetchone() is None:
            return None
    if not emit:
        return {"id": alert_id}
    return await _emit(conn, alert_id, kind or f"alert.{to}", actor, event_fields)


async def add_note(
    conn: psycopg.AsyncConnection[Any], alert_id: int, *, actor: str, note: str
) -> dict[str, Any] | None:
    """A note on an alert: only an event (the audit trail), the alert row is unchanged."""
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE alerts SET updated_at = now() WHERE id = %s RETURNING id", (alert_id,)
        )
        if await cur.fetchone() is None:
            return None
    row = await get(conn, alert_id)
    assert row is not None
    payload = to_json(row) | {"note": note}
    await events.append(
        conn,
        kind="alert.note",
        payload=payload,
        alert_id=alert_id,
        device_id=row["device_id"],
        area_id=row["area_id"],
        severity=row["severity"],
        actor=actor,
    )
    return payload
