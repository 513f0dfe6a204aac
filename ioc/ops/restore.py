"""``ioc restore``: a backup back into a database, the way TimescaleDB documents it.

1. Read the archive: its PostgreSQL version and the TimescaleDB version recorded in its
   ``_timescaledb_catalog.metadata`` (no database needed for that).
2. Refuse the clear mistakes before touching anything: a TimescaleDB version the server cannot
   create, an older PostgreSQL than the one dumped from, a target database that holds tables
   (unless ``--force``).
3. Restore into a *fresh* staging database: ``CREATE EXTENSION timescaledb VERSION '<same>'``,
   ``timescaledb_pre_restore()``, ``pg_restore`` (one job: TimescaleDB's catalogue must be
   restored in order), then swap it in under the target's name and run
   ``timescaledb_post_restore()`` and ``ANALYZE``.

The target's old content survives until the restored copy is complete: a failed restore drops
the staging database and leaves the target as it was. Owners and GRANTs are not restored
(``--no-owner --no-privileges``): the restoring role, the application's, owns everything.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from alembic.script import ScriptDirectory
from psycopg import sql

from ioc.db import migrate
from ioc.ops.pgtools import (
    OpsError,
    Target,
    connect,
    find_tool,
    major_version,
    run_tool,
    scalar,
    tool_env,
)

log = structlog.get_logger("ioc.ops")

RESERVED = {"postgres", "template0", "template1"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")

# Relations that are the database's own content: not system catalogues and not objects an
# extension owns (TimescaleDB's catalogue and views belong to the extension).
_USER_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                  AND d.objid = n.oid AND d.deptype = 'e')
"""


@dataclass(frozen=True)
class Archive:
    path: Path
    database: str
    created: str
    server_version: str
    timescaledb_version: str | None


@dataclass(frozen=True)
class RestoreResult:
    database: str
    replaced: bool
    seconds: float
    timescaledb_version: str
    revision: str | None
    head: str | None
    hypertables: int
    chunks: int
    alerts: int
    events: int


# ------------------------------------------------------------------------- pure checks ---


def parse_list_header(text: str) -> dict[str, str]:
    """The ``; key: value`` header of ``pg_restore --list``."""
    header: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith(";"):
            break
        body = line.lstrip("; ").strip()
        if body.startswith("Archive created at "):
            header["created"] = body.removeprefix("Archive created at ")
        elif ": " in body:
            key, value = body.split(": ", 1)
            header[key.strip()] = value.strip()
    return header


def parse_metadata_copy(text: str) -> dict[str, str]:
    """key -> value from the COPY block of ``_timescaledb_catalog.metadata`` (pg_restore -a)."""
    values: dict[str, str] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("COPY _timescaledb_catalog.metadata"):
            inside = True
        elif inside and line == "\\.":
            break
        elif inside:
            parts = line.split("\t")
            if len(parts) >= 2:
                values[parts[0]] = parts[1]
    return values


def version_problem(archive: str | None, available: list[str], path: Path) -> str | None:
    if archive is None:
        return (
            f"{path} holds no TimescaleDB catalogue: not a backup of an IOC database "
            "(make one with `ioc backup`)"
        )
    if archive not in available:
        offered = ", ".join(sorted(available)) or "none"
        return (
            f"the backup was made with TimescaleDB {archive}, this server can create only "
            f"{offered}: restore on a server with TimescaleDB {archive} installed, then "
            "`ALTER EXTENSION timescaledb UPDATE` there and take a new backup"
        )
    return None


def postgres_problem(archive: str, server: str) -> str | None:
    a, s = major_version(archive), major_version(server)
    if a is not None and s is not None and s < a:
        return (
            f"the backup comes from PostgreSQL {a}, this server runs {s}: restore on "
            f"PostgreSQL {a} or newer"
        )
    return None


def occupancy_problem(name: str, tables: int | None, force: bool) -> str | None:
    if tables and not force:
        return (
            f"database {name} is not empty ({tables} tables and views): restore into a new one with "
            "--database NAME, or replace it with --force (stop the centre's roles first)"
        )
    return None


def name_problem(name: str) -> str | None:
    if name in RESERVED or not _NAME.match(name):
        return f"cannot restore into a database named {name!r}: choose another --database"
    return None


# ----------------------------------------------------------------------------- archive ---


def inspect_archive(path: Path) -> Archive:
    if not path.is_file():
        raise OpsError(f"{path}: no such file")
    pg_restore = find_tool("pg_restore")
    env = dict(os.environ)  # reading a file needs no login
    try:
        listing = run_tool([str(pg_restore), "--list", str(path)], env, f"reading {path}")
    except OpsError as exc:
        raise OpsError(f"{exc} (is it a file made by `ioc backup` / pg_dump -Fc?)") from None
    header = parse_list_header(listing.stdout)
    catalogue = run_tool(
        [str(pg_restore), "--data-only", "--schema=_timescaledb_catalog", "--table=metadata"]
        + ["--file=-", str(path)],
        env,
        f"reading {path}",
    )
    return Archive(
        path=path,
        database=header.get("dbname", "?"),
        created=header.get("created", "?"),
        server_version=header.get("Dumped from database version", "?"),
        timescaledb_version=parse_metadata_copy(catalogue.stdout).get("timescaledb_version"),
    )


# ----------------------------------------------------------------------------- restore ---


def restore(
    dsn: str, path: Path, *, database: str | None = None, force: bool = False
) -> RestoreResult:
    """Restore ``path`` into ``database`` (default: the configured one) on the same server."""
    server = Target.from_dsn(dsn)
    name = database or server.dbname
    if problem := name_problem(name):
        raise OpsError(problem)
    archive = inspect_archive(path)
    admin = _maintenance(server)
    with connect(admin) as conn:
        server_version = str(scalar(conn, "SHOW server_version"))
        available = [
            str(r[0])
            for r in conn.execute(
                "SELECT version FROM pg_available_extension_versions WHERE name = 'timescaledb'"
            ).fetchall()
        ]
        preload = str(scalar(conn, "SHOW shared_preload_libraries"))
        exists = scalar(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)) is not None
    for problem in (
        version_problem(archive.timescaledb_version, available, path),
        postgres_problem(archive.server_version, server_version),
    ):
        if problem:
            raise OpsError(problem)
    if "timescaledb" not in preload:
        raise OpsError(
            "the server does not preload TimescaleDB: add timescaledb to "
            "shared_preload_libraries and restart it"
        )
    tables = _user_relations(server.on(name)) if exists else None
    if problem := occupancy_problem(name, tables, force):
        raise OpsError(problem)
    assert archive.timescaledb_version is not None
    started = time.monotonic()
    staging = f"{name[:40]}_restoring_{secrets.token_hex(3)}"
    log.info("restore started", file=str(path), database=name, staging=staging)
    with connect(admin) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(staging)
            )
        )
    try:
        _load(server.on(staging), path, archive.timescaledb_version)
        log.info("restore loaded", staging=staging, seconds=round(time.monotonic() - started, 2))
        _swap(admin, staging, name, exists)
    except BaseException:
        with connect(admin) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(staging))
            )
        raise
    result = _finish(server.on(name), archive.timescaledb_version, replaced=exists)
    seconds = time.monotonic() - started
    log.info("restore finished", database=name, seconds=round(seconds, 2))
    return RestoreResult(**(result | {"seconds": seconds}))


def _maintenance(server: Target) -> Target:
    """Where to run CREATE/ALTER/DROP DATABASE from: ``postgres``, else ``template1``."""
    try:
        with connect(server.on("postgres")):
            return server.on("postgres")
    except OpsError as exc:
        if "does not exist" not in str(exc):
            raise
    return server.on("template1")


def _user_relations(target: Target) -> int:
    with connect(target) as conn:
        return int(scalar(conn, _USER_RELATIONS))


def _load(staging: Target, path: Path, version: str) -> None:
    with connect(staging) as conn:
        conn.execute(
            sql.SQL("CREATE EXTENSION timescaledb VERSION {}").format(sql.Literal(version))
        )
        conn.execute("SELECT timescaledb_pre_restore()")
    pg_restore = find_tool("pg_restore")
    argv = [str(pg_restore), "--no-owner", "--no-privileges", "--exit-on-error", "--no-password"]
    argv += [f"--dbname={staging.conninfo}", str(path)]
    with tool_env(staging) as env:
        run_tool(argv, env, "pg_restore")


def _swap(admin: Target, staging: str, name: str, exists: bool) -> None:
    """Put the restored database under ``name``; the old one is dropped only once that worked."""
    ident = sql.Identifier
    with connect(admin) as conn:
        _wait_alone(conn, staging)
        if not exists:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(staging), ident(name))
            )
            return
        old = f"{name[:40]}_replaced_{secrets.token_hex(3)}"
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident(name)))
        try:
            _wait_alone(conn, name)
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(name), ident(old)))
        except BaseException:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(name)))
            raise
        try:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(staging), ident(name))
            )
        except BaseException:
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(old), ident(name)))
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(name)))
            raise
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident(old)))
        log.info("restore replaced the old database", database=name)


def _wait_alone(conn: psycopg.Connection[Any], dbname: str, timeout: float = 15.0) -> None:
    """End the other sessions on ``dbname`` (workers, TimescaleDB's scheduler) until none is left."""
    deadline = time.monotonic() + timeout
    while True:
        others = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
        if not others:
            return
        if time.monotonic() > deadline:
            raise OpsError(
                f"database {dbname} still has {len(others)} sessions after {timeout:.0f} s: "
                "stop the centre's roles and try again"
            )
        time.sleep(0.2)


def _finish(target: Target, version: str, *, replaced: bool) -> dict[str, Any]:
    with connect(target) as conn:
        conn.execute("SELECT timescaledb_post_restore()")
        # post_restore restarts the database's job scheduler inside its own transaction; the
        # scheduler can start before that commits, still see restoring = on, and exit (seen
        # with 2.19). Starting it again once committed is idempotent.
        try:
            conn.execute("SELECT _timescaledb_functions.restart_background_workers()")
        except (psycopg.errors.UndefinedFunction, psycopg.errors.InsufficientPrivilege):
            log.warning("could not restart TimescaleDB's job scheduler; restart PostgreSQL")
        conn.execute("ANALYZE")
        installed = str(
            scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        )
        hypertables = int(scalar(conn, "SELECT count(*) FROM timescaledb_information.hypertables"))
        chunks = int(scalar(conn, "SELECT count(*) FROM timescaledb_information.chunks"))
        counts = {t: _count(conn, t) for t in ("alerts", "events")}
        revision = _revision(conn)
    if installed != version:
        raise OpsError(f"restored TimescaleDB is {installed}, expected {version}")
    head = ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head()
    return {
        "database": target.dbname,
        "replaced": replaced,
        "timescaledb_version": installed,
        "revision": revision,
        "head": head,
        "hypertables": hypertables,
        "chunks": chunks,
        "alerts": counts["alerts"],
        "events": counts["events"],
    }


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    try:
        return int(scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))
    except psycopg.errors.UndefinedTable:
        return 0


def _revision(conn: psycopg.Connection[Any]) -> str | None:
    try:
        value = scalar(conn, "SELECT version_num FROM alembic_version")
    except psycopg.errors.UndefinedTable:
        return None
    return None if value is None else str(value)
