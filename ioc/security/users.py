"""Users, sessions and the audit log in PostgreSQL.

Every change is written with its audit row in one transaction. Sign-in failures count per
account (consecutive failures lock it for a while, doubling up to a cap) and per client address
(read back from the audit log, so two API processes share the count)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ioc.security import passwords, tokens
from ioc.security.policy import Perm, Role, allows

MAX_LOCKOUT = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    access: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(hours=12)
    absolute: timedelta = timedelta(days=7)
    max_failures: int = 5
    lockout: timedelta = timedelta(seconds=60)
    ip_window: timedelta = timedelta(minutes=5)
    ip_max_failures: int = 30


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user of one request or socket, as the database says now."""

    user_id: int
    username: str
    display_name: str
    role: str
    area_id: str
    area_name: str
    session_id: str
    province: bool  # the user's area is the root: sees everything
    areas: frozenset[str]  # the user's area and every area below it

    def can(self, perm: Perm) -> bool:
        return allows(self.role, perm)

    def sees(self, area_id: str | None) -> bool:
        return self.province or (area_id is not None and area_id in self.areas)

    def public(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "area_id": self.area_id,
            "area_name": self.area_name,
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    principal: Principal
    refresh_token: str
    expires_at: datetime


class SignInRefused(Exception):
    def __init__(self, code: str, retry_after: int | None = None) -> None:
        super().__init__(code)
        self.code = code  # bad_credentials | locked | rate_limited | disabled | expired
        self.retry_after = retry_after


class UserError(ValueError):
    """A user-management request that cannot be done (unknown user, bad role, ...)."""


Conn = psycopg.AsyncConnection[Any]


async def audit(
    conn: Conn,
    actor: str,
    action: str,
    target: str | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, ip, detail) VALUES (%s, %s, %s, %s, %s)",
        (actor, action, target, ip, Jsonb(detail)),
    )


# ------------------------------------------------------------------------ administration ---


async def add_user(
    conn: Conn,
    *,
    username: str,
    role: str,
    area_id: str,
    password: str,
    display_name: str = "",
    actor: str,
    ip: str | None = None,
) -> dict[str, Any]:
    if role not in {r.value for r in Role}:
        raise UserError(f"role must be one of {[r.value for r in Role]}")
    pw_hash = await asyncio.to_thread(passwords.hash_password, password)
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT 1 FROM areas WHERE id = %s", (area_id,))
        if await cur.fetchone() is None:
            raise UserError(f"unknown area {area_id!r}")
        await cur.execute("SELECT 1 FROM users WHERE username = %s", (username,))
        if await cur.fetchone() is not None:
            raise UserError(f"user {username!r} already exists")
        try:
            await cur.execute(
                "INSERT INTO users (username, display_name, role, area_id, password_hash) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (username, display_name, role, area_id, pw_hash),
            )
        except psycopg.errors.CheckViolation:
            raise UserError(
                "a username is 2-64 characters: lower-case letters, digits, '.', '_' or '-'"
            ) from None
        await audit(conn, actor, "user.add", username, ip, role=role, area_id=area_id)
    got = await get_user(conn, username)
    assert got is not None
    return got


USER_COLUMNS = (
    "u.id, u.username, u.display_name, u.role, u.area_id, a.name AS area_name, u.disabled, "
    "u.locked_until, u.created_at, u.password_changed_at, "
    "(SELECT max(s.last_used_at) FROM auth_sessions s WHERE s.user_id = u.id) AS last_seen_at"
)


async def get_user(conn: Conn, username: str) -> dict[str, Any] | None:
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {USER_COLUMNS} FROM users u JOIN areas a ON a.id = u.area_id "
            "WHERE u.username = %s",
            (username,),
        )
        return await cur.fetchone()


async def list_users(conn: Conn, within: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Every user, or those whose area lies in ``within``."""
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {USER_COLUMNS} FROM users u JOIN areas a ON a.id = u.area_id "
            "WHERE %s::text[] IS NULL OR u.area_id = ANY(%s::text[]) ORDER BY u.username",
            (None if within is None else list(within),) * 2,
        )
        return list(await cur.fetchall())


async def set_disabled(
    conn: Conn, username: str, disabled: bool, *, actor: str, ip: str | None = None
) -> None:
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE users SET disabled = %s, failed_logins = 0, locked_until = NULL "
            "WHERE username = %s RETURNING id",
            (disabled, username),
        )
        row = await cur.fetchone()
        if row is None:
            raise UserError(f"no user {username!r}")
        if disabled:
            await _revoke_all(conn, row["id"], "user disabled")
        await audit(conn, actor, "user.disable" if disabled else "user.enable", username, ip)


async def reset_password(
    conn: Conn, username: str, password: str, *, actor: str, ip: str | None = None
) -> None:
    pw_hash = await asyncio.to_thread(passwords.hash_password, password)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE users SET password_hash = %s, password_changed_at = now(), failed_logins = 0,"
            " locked_until = NULL WHERE username = %s RETURNING id",
            (pw_hash, username),
        )
        row = await cur.fetchone()
        if row is None:
            raise UserError(f"no user {username!r}")
        await _revoke_all(conn, row["id"], "password reset")
        await audit(conn, actor, "user.reset_password", username, ip)


async def _revoke_all(conn: Conn, user_id: int, why: str) -> None:
    await conn.execute(
        "UPDATE auth_sessions SET revoked_at = now(), revoked_why = %s "
        "WHERE user_id = %s AND revoked_at IS NULL",
        (why, user_id),
    )


# ------------------------------------------------------------------------------ sessions ---

PRINCIPAL_SQL = """
SELECT u.id AS user_id, u.username, u.display_name, u.role, u.area_id, a.name AS area_name,
       a.parent_id IS NULL AS province, s.id::text AS session_id, s.expires_at,
       (u.disabled OR s.revoked_at IS NOT NULL OR s.idle_until <= now()
        OR s.expires_at <= now()) AS ended,
       (SELECT coalesce(array_agg(c.area_id), '{}') FROM area_closure c
         WHERE c.ancestor_id = u.area_id) AS areas
FROM auth_sessions s JOIN users u ON u.id = s.user_id JOIN areas a ON a.id = u.area_id
"""


def _principal(row: dict[str, Any]) -> Principal:
    return Principal(
        user_id=row["user_id"],
        username=row["username"],
        display_name=row["display_name"],
        role=row["role"],
        area_id=row["area_id"],
        area_name=row["area_name"],
        session_id=row["session_id"],
        province=row["province"],
        areas=frozenset(row["areas"]),
    )


async def principal_for(conn: Conn, session_id: str, username: str) -> Principal | None:
    """The session's user if the session is still live (not revoked, idle or expired, and
    the user not disabled); None otherwise."""
    try:
        sid = uuid.UUID(session_id)
    except ValueError:
        return None
    async with conn.cursor() as cur:
        await cur.execute(PRINCIPAL_SQL + " WHERE s.id = %s", (sid,))
        row = await cur.fetchone()
    if row is None or row["ended"] or row["username"] != username:
        return None
    return _principal(row)


async def sign_in(
    conn: Conn,
    policy: AuthPolicy,
    username: str,
    password: str,
    *,
    ip: str | None,
    user_agent: str | None,
) -> NewSession:
    """A new session, or :class:`SignInRefused`. Failures are recorded (committed) before
    the refusal is raised."""
    refusal: SignInRefused | None = None
    async with conn.transaction(), conn.cursor() as cur:
        if ip is not None:
            await cur.execute(
                "SELECT count(*) AS n, extract(epoch FROM min(at) + %s - now()) AS wait_s "
                "FROM audit_log "
                "WHERE action = 'auth.sign_in_failed' AND ip = %s AND at > now() - %s",
                (policy.ip_window, ip, policy.ip_window),
            )
            seen = await cur.fetchone()
            assert seen is not None
            if seen["n"] >= policy.ip_max_failures:
                raise SignInRefused("rate_limited", max(1, int(seen["wait_s"]) + 1))
        await cur.execute(
            "SELECT id, password_hash, disabled, failed_logins, locked_until, "
            "       greatest(0, extract(epoch FROM locked_until - now())) AS locked_s "
            "FROM users WHERE username = %s FOR UPDATE",
            (username,),
        )
        user = await cur.fetchone()
        if user is not None and user["locked_s"] > 0:
            await audit(conn, username, "auth.sign_in_failed", username, ip, reason="locked")
            refusal = SignInRefused("locked", int(user["locked_s"]) + 1)
        elif not await asyncio.to_thread(
            passwords.verify, user["password_hash"] if user else None, password
        ):
            reason = "unknown_user" if user is None else "bad_password"
            await audit(
                conn, username[:64], "auth.sign_in_failed", username[:64], ip, reason=reason
            )
            refusal = SignInRefused("bad_credentials")
            if user is not None:
                failed = user["failed_logins"] + 1
                over = failed - policy.max_failures
                lock = min(policy.lockout * (2 ** max(0, over)), MAX_LOCKOUT) if over >= 0 else None
                await cur.execute(
                    "UPDATE users SET failed_logins = %s, "
                    "locked_until = CASE WHEN %s::interval IS NULL THEN locked_until "
                    "                    ELSE now() + %s::interval END WHERE id = %s",
                    (failed, lock, lock, user["id"]),
                )
                if lock is not None:
                    await audit(conn, "system", "auth.lockout", username, ip, seconds=lock.seconds)
        elif user is not None and user["disabled"]:
            await audit(conn, username, "auth.sign_in_failed", username, ip, reason="disabled")
            refusal = SignInRefused("disabled")
        if refusal is None:  # (a refusal: the transaction commits the counts and audit first)
            assert user is not None
            if passwords.needs_rehash(user["password_hash"]):
                await cur.execute(
                    "UPDATE users SET password_hash = %s WHERE id = %s",
                    (await asyncio.to_thread(passwords.hash_password, password), user["id"]),
                )
            await cur.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = %s",
                (user["id"],),
            )
            sid, refresh = uuid.uuid4(), tokens.new_refresh()
            await cur.execute(
                "INSERT INTO auth_sessions (id, user_id, refresh_hash, idle_until, expires_at, ip,"
                " user_agent) VALUES (%s, %s, %s, now() + %s, now() + %s, %s, %s) "
                "RETURNING expires_at",
                (
                    sid,
                    user["id"],
                    tokens.digest(refresh),
                    policy.idle,
                    policy.absolute,
                    ip,
                    (user_agent or "")[:300],
                ),
            )
            created = await cur.fetchone()
            assert created is not None
            expires_at: datetime = created["expires_at"]
            await audit(conn, username, "auth.sign_in", username, ip)
    if refusal is not None:
        await conn.commit()  # keep the counts and audit rows even if the caller rolls back
        raise refusal
    principal = await principal_for(conn, str(sid), username)
    assert principal is not None
    return NewSession(principal, refresh, expires_at)


async def refresh(
    conn: Conn, policy: AuthPolicy, refresh_token: str, *, ip: str | None
) -> NewSession:
    """Swap a refresh token for a new one (rotation) on a live session: each refresh token
    works once."""
    async with conn.transaction(), conn.cursor() as cur:
        digest = tokens.digest(refresh_token)
        await cur.execute(PRINCIPAL_SQL + " WHERE s.refresh_hash = %s FOR UPDATE OF s", (digest,))
        row = await cur.fetchone()
        if row is None or row["ended"]:
            raise SignInRefused("expired")
        new = tokens.new_refresh()
        await cur.execute(
            "UPDATE auth_sessions SET refresh_hash = %s, last_used_at = now(), "
            "idle_until = least(expires_at, now() + %s) WHERE id = %s::uuid",
            (tokens.digest(new), policy.idle, row["session_id"]),
        )
    return NewSession(_principal(row), new, row["expires_at"])


async def sign_out(conn: Conn, principal: Principal, *, ip: str | None) -> None:
    async with conn.transaction():
        await conn.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_why = 'signed out' "
            "WHERE id = %s::uuid AND revoked_at IS NULL",
            (principal.session_id,),
        )
        await audit(conn, principal.username, "auth.sign_out", principal.username, ip)


async def sign_out_refresh(conn: Conn, refresh_token: str, *, ip: str | None) -> bool:
    """Sign out with only the refresh token (the access token already expired)."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "UPDATE auth_sessions s SET revoked_at = now(), revoked_why = 'signed out' "
            "FROM users u WHERE u.id = s.user_id AND s.refresh_hash = %s "
            "AND s.revoked_at IS NULL RETURNING u.username",
            (tokens.digest(refresh_token),),
        )
        row = await cur.fetchone()
        if row is not None:
            await audit(conn, row["username"], "auth.sign_out", row["username"], ip)
    return row is not None


async def note_rules(conn: Conn, path: str, text: str, rule_ids: list[str]) -> bool:
    """Audit a change of the alert rules file: called when the engine loads it. True when the
    content differs from what the last engine loaded (first load counts as a change)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT pg_advisory_xact_lock(hashtext('audit:rules'))")
        await cur.execute(
            "SELECT detail->>'sha256' AS sha FROM audit_log WHERE action = 'rules.changed' "
            "ORDER BY id DESC LIMIT 1"
        )
        last = await cur.fetchone()
        if last is not None and last["sha"] == digest:
            return False
        await audit(
            conn,
            f"host:{socket.gethostname()}",
            "rules.changed",
            path,
            None,
            sha256=digest,
            previous_sha256=last["sha"] if last else None,
            rules=rule_ids,
        )
    return True


async def live_sessions(conn: Conn, session_ids: list[str]) -> set[str]:
    """Those of ``session_ids`` that are still live (one query for every open socket)."""
    async with conn.cursor() as cur:
        await cur.execute(PRINCIPAL_SQL + " WHERE s.id = ANY(%s::uuid[])", (session_ids,))
        return {r["session_id"] for r in await cur.fetchall() if not r["ended"]}
