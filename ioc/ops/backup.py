"""``ioc backup``: one file holding the whole database, made with ``pg_dump -Fc``.

pg_dump reads everything in one repeatable-read transaction, so a backup of a running centre
is a consistent snapshot (workers keep writing; what they write afterwards is simply not in
it). The custom format is compressed and lets ``pg_restore`` restore it selectively.

TimescaleDB needs nothing special to *dump* (its catalogue tables are dumped as extension
configuration tables, including the extension version, which ``ioc restore`` reads back).
pg_dump prints notes about circular foreign keys in that catalogue: they are expected.

The file is written as ``<name>.partial`` (mode 0600: it holds every row, password hashes
included) and renamed when pg_dump finished and ``pg_restore --list`` could read it back, so a
file with the final name is always complete.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ioc.ops.pgtools import (
    OpsError,
    Target,
    connect,
    find_tool,
    major_version,
    run_tool,
    scalar,
    tool_env,
    unexpected_warnings,
)

log = structlog.get_logger("ioc.ops")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    seconds: float
    database: str
    server_version: str
    timescaledb_version: str
    warnings: list[str] = field(default_factory=list)


def default_path(state_dir: Path, database: str, now: datetime | None = None) -> Path:
    """``<state dir>/backups/ioc-<database>-<UTC time>.dump``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return state_dir / "backups" / f"ioc-{database}-{stamp}.dump"


def backup(dsn: str, out: Path) -> BackupResult:
    target = Target.from_dsn(dsn)
    pg_dump, pg_restore = find_tool("pg_dump"), find_tool("pg_restore")
    with connect(target) as conn:
        server_version = str(scalar(conn, "SHOW server_version"))
        tsdb = scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    if tsdb is None:
        raise OpsError(
            f"database {target.where} has no timescaledb extension: not an IOC database "
            "(check IOC_DATABASE_URL / IOC_PG_DATABASE, or run `ioc migrate` first)"
        )
    with tool_env(target) as env:
        tool = run_tool([str(pg_dump), "--version"], env, "pg_dump").stdout
        if (major_version(tool) or 0) < (major_version(server_version) or 0):
            raise OpsError(
                f"{pg_dump} is older than the server (PostgreSQL {server_version}): install "
                "the client tools of the server's major version (postgresql-client-N)"
            )
        if out.exists():
            raise OpsError(f"{out} exists already: choose another --out or move it away")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        started = time.monotonic()
        try:
            argv = [str(pg_dump), "--format=custom", "--no-password", "--lock-wait-timeout=60s"]
            argv += [f"--file={partial}", f"--dbname={target.conninfo}"]
            proc = run_tool(argv, env, f"pg_dump of {target.where}")
            # Read the table of contents back: the file is a complete, readable archive.
            run_tool([str(pg_restore), "--list", str(partial)], env, "checking the backup")
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        seconds = time.monotonic() - started
    partial.replace(out)
    warnings = unexpected_warnings(proc.stderr)
    for line in warnings:
        log.warning("pg_dump", message=line)
    result = BackupResult(
        path=out,
        size_bytes=out.stat().st_size,
        seconds=seconds,
        database=target.dbname,
        server_version=server_version,
        timescaledb_version=str(tsdb),
        warnings=warnings,
    )
    log.info(
        "backup written",
        path=str(out),
        bytes=result.size_bytes,
        seconds=round(seconds, 2),
        timescaledb=result.timescaledb_version,
    )
    return result
