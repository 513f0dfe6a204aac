"""``ioc users add|list|disable|enable|reset-password``: user administration from the shell.

Passwords are read from stdin (``--password-stdin``) or asked for twice without echo; with
neither, a strong one is generated and printed once. Every change is audited with the actor
``cli:<os user>``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from typing import Any

from ioc.config import Settings
from ioc.security.policy import Role

# The database modules are imported where used: building the `ioc` parser must stay cheap,
# every role's start pays for it.


def add_parser(sub: Any) -> None:
    u = sub.add_parser("users", help="users who sign in to the dashboard and the API")
    us = u.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = us.add_parser("add", help="add a user")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=[r.value for r in Role])
    a.add_argument("--area", required=True, help="area id: the user sees and acts only there")
    a.add_argument("--name", default="", help="display name")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    us.add_parser("list", help="list users")
    for verb in ("disable", "enable"):
        d = us.add_parser(verb, help=f"{verb} a user (disable also ends their sessions)")
        d.add_argument("username")
    r = us.add_parser("reset-password", help="set a new password and end the user's sessions")
    r.add_argument("username")
    r.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return f"cli:uid{os.getuid()}"


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated)."""
    from ioc.security.users import UserError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise UserError("the two passwords differ")
        return first, False
    return secrets.token_urlsafe(15), True


def run(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.db.connect import connect
    from ioc.security import users

    conn = await connect(settings.dsn, autocommit=True)
    try:
        if args.action == "list":
            rows = await users.list_users(conn)
            print(f"{'USER':<20} {'ROLE':<11} {'AREA':<24} STATE")
            for u in rows:
                state = "disabled" if u["disabled"] else "active"
                print(f"{u['username']:<20} {u['role']:<11} {u['area_id']:<24} {state}")
            return
        if args.action in ("disable", "enable"):
            await users.set_disabled(conn, args.username, args.action == "disable", actor=_actor())
            print(f"{args.username}: {args.action}d")
            return
        password, generated = _password(args)
        try:
            if args.action == "add":
                await users.add_user(
                    conn,
                    username=args.username,
                    role=args.role,
                    area_id=args.area,
                    password=password,
                    display_name=args.name,
                    actor=_actor(),
                )
                print(f"added {args.username} ({args.role}, {args.area})")
            else:
                await users.reset_password(conn, args.username, password, actor=_actor())
                print(f"{args.username}: new password set, sessions ended")
        except ValueError as e:  # UserError, or a password too short
            raise users.UserError(str(e)) from None
        if generated:
            print(f"password (shown once): {password}")
    finally:
        await conn.close()


async def ensure_dev_admin(settings: Settings) -> tuple[str, str | None]:
    """Development only: make sure an ``admin`` user exists, with a password kept in the state
    directory, so `make run` can say how to sign in. Returns (username, password or None when
    the admin was made by someone else)."""
    from ioc.db.connect import connect
    from ioc.security import users

    path = settings.state_dir / "admin-password"
    conn = await connect(settings.dsn, autocommit=True)
    try:
        if await users.get_user(conn, "admin") is None:
            async with conn.cursor() as cur:
                await cur.execute(
                    "SELECT id FROM areas WHERE parent_id IS NULL ORDER BY id LIMIT 1"
                )
                root = await cur.fetchone()
            if root is None:
                raise users.UserError("no areas yet: run `ioc seed` first")
            password = secrets.token_urlsafe(12)
            await users.add_user(
                conn,
                username="admin",
                role="admin",
                area_id=root["id"],
                password=password,
                display_name="Quản trị (dev)",
                actor="cli:dev",
            )
            settings.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(password + "\n", encoding="utf-8")
            path.chmod(0o600)
            return "admin", password
    finally:
        await conn.close()
    return "admin", path.read_text(encoding="utf-8").strip() if path.is_file() else None
