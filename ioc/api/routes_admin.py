"""Administration: users and the audit log (admins only, within their own area)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ioc.api.auth import Admin
from ioc.api.deps import Conn
from ioc.api.schemas import PLAIN
from ioc.security import users

router = APIRouter(prefix="/api/v1", tags=["admin"])


class UserRow(BaseModel):
    username: str
    display_name: str
    role: str
    area_id: str
    area_name: str
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    password_changed_at: datetime
    last_seen_at: datetime | None


class AuditRow(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    ip: str | None
    detail: dict[str, Any]


@router.get("/users", response_model=list[UserRow])
async def list_users(conn: Conn, who: Admin) -> list[dict[str, Any]]:
    """The users of the admin's area. Changes go through `ioc users` (audited)."""
    return await users.list_users(conn, None if who.province else who.areas)


@router.get("/audit", response_model=list[AuditRow])
async def audit_log(
    conn: Conn,
    who: Admin,
    actor: str | None = Query(None, max_length=64, pattern=PLAIN),
    action: str | None = Query(
        None, max_length=64, pattern=PLAIN, description="prefix, e.g. auth."
    ),
    before_id: int | None = Query(None, ge=1, le=2**62, description="page: ids below this"),
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """The audit trail, newest first: sign-ins, failures, acknowledgements, maintenance,
    user changes, picture views. Admins of an area see the entries of their area's users."""
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT l.id, l.at, l.actor, l.action, l.target, host(l.ip) AS ip, l.detail
               FROM audit_log l
               WHERE (%(actor)s::text IS NULL OR l.actor = %(actor)s)
                 AND (%(action)s::text IS NULL OR starts_with(l.action, %(action)s))
                 AND (%(before)s::bigint IS NULL OR l.id < %(before)s)
                 AND (%(areas)s::text[] IS NULL OR l.actor IN (
                        SELECT username FROM users WHERE area_id = ANY(%(areas)s::text[])))
               ORDER BY l.id DESC LIMIT %(limit)s""",
            {
                "actor": actor,
                "action": action,
                "before": before_id,
                "areas": None if who.province else list(who.areas),
                "limit": limit,
            },
        )
        return list(await cur.fetchall())


class PictureViewRow(BaseModel):
    username: str
    device_id: str
    views: int
    first_at: datetime
    last_at: datetime
    addresses: list[str]


@router.get("/audit/pictures", response_model=list[PictureViewRow])
async def picture_views(
    conn: Conn,
    who: Admin,
    days: int = Query(30, ge=1, le=3660, description="look back this many days"),
    username: str | None = Query(None, max_length=64, pattern=PLAIN),
    device_id: str | None = Query(None, max_length=64, pattern=PLAIN),
) -> list[dict[str, Any]]:
    """Who looked at which camera's pictures, how often, when and from where: one row per
    user and camera (admins: cameras of their area)."""
    async with conn.cursor() as cur:
        await cur.execute(
            """SELECT v.username, v.device_id, sum(v.views)::int AS views,
                      min(v.first_at) AS first_at, max(v.last_at) AS last_at,
                      coalesce(array_agg(DISTINCT host(v.ip)) FILTER (WHERE v.ip IS NOT NULL),
                               '{}') AS addresses
               FROM picture_views v JOIN devices d ON d.id = v.device_id
               WHERE v.bucket > now() - make_interval(days => %(days)s)
                 AND (%(user)s::text IS NULL OR v.username = %(user)s)
                 AND (%(device)s::text IS NULL OR v.device_id = %(device)s)
                 AND (%(areas)s::text[] IS NULL OR d.area_id = ANY(%(areas)s::text[]))
               GROUP BY v.username, v.device_id
               ORDER BY max(v.last_at) DESC LIMIT 5000""",
            {
                "days": days,
                "user": username,
                "device": device_id,
                "areas": None if who.province else list(who.areas),
            },
        )
        return list(await cur.fetchall())
