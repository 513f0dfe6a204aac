"""Running PostgreSQL's client tools (pg_dump, pg_restore) for a database of the centre.

The tools come from the PostgreSQL the project uses (``ioc.services.postgres.PG_BIN_DIR``, the
same directory the local cluster runs from), falling back to ``PATH``. The password never
reaches a command line or a log: the child gets a connection string without it and a private
passfile (``PGPASSFILE``, mode 0600, deleted afterwards).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ioc.db.connect import describe
from ioc.logs import redact
from ioc.services.postgres import PG_BIN_DIR

SETUP_HINT = "run `make setup` (scripts/provision.sh installs postgresql-15)"


class OpsError(Exception):
    """A backup, restore or check could not be done. The message is one line: cause and fix."""


def find_tool(name: str, bin_dir: Path = PG_BIN_DIR) -> Path:
    """``bin_dir/name`` (the project's PostgreSQL), else the one on PATH."""
    candidate = bin_dir / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise OpsError(f"{name} not found in {bin_dir} nor on PATH: {SETUP_HINT}")


@dataclass(frozen=True)
class Target:
    """Where a database is, split into what may be shown (``params``) and the password."""

    params: dict[str, str]
    password: str | None

    @classmethod
    def from_dsn(cls, dsn: str) -> Target:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        password = params.pop("password", None)
        return cls(params, password)

    @property
    def dbname(self) -> str:
        return self.params.get("dbname") or self.params.get("user") or "postgres"

    @property
    def where(self) -> str:
        """host:port/dbname, for messages."""
        host = self.params.get("host", "localhost")
        port = self.params.get("port", "5432")
        return f"{host}:{port}/{self.dbname}"

    def on(self, dbname: str) -> Target:
        """The same server and login, another database."""
        return replace(self, params=self.params | {"dbname": dbname})

    @property
    def conninfo(self) -> str:
        """For a child's ``-d``: no password in it."""
        return make_conninfo(**self.params)

    def dsn(self) -> str:
        """For psycopg in this process (never logged)."""
        extra = {"password": self.password} if self.password is not None else {}
        return make_conninfo(**self.params, **extra)


def _passfile_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


@contextlib.contextmanager
def tool_env(target: Target) -> Iterator[dict[str, str]]:
    """The environment for a child tool: a private passfile instead of a password anywhere."""
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    if target.password is None:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="ioc-pgpass-") as tmp:
        passfile = Path(tmp) / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_passfile_line(target.password))
        env["PGPASSFILE"] = str(passfile)
        env.pop("PGPASSWORD", None)  # it would win over the passfile
        yield env


def run_tool(
    argv: list[str], env: dict[str, str], what: str, *, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a client tool; on failure raise OpsError with its most telling stderr line."""
    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise OpsError(f"{what}: {argv[0]} not found: {SETUP_HINT}") from None
    except subprocess.TimeoutExpired:
        raise OpsError(f"{what}: {Path(argv[0]).name} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise OpsError(f"{what}: {first_error(proc.stderr) or f'exit status {proc.returncode}'}")
    return proc


def first_error(stderr: str) -> str:
    """The line that names the cause (pg tools print "error:" / "FATAL:"), one line, redacted."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "FATAL:" in line or "ERROR:" in line:
            return redact(" ".join(line.split()))[:300]
    return redact(" ".join(lines[-1].split()))[:300] if lines else ""


# pg_dump's warnings about TimescaleDB's own catalogue: its tables reference each other
# (hypertable <-> chunk, continuous_agg), which pg_dump reports for every dump. Harmless for a
# full dump restored as TimescaleDB documents (see docs/operations.md).
EXPECTED_DUMP_NOTES = ("circular foreign-key constraints", "--disable-triggers", "full dump")


def unexpected_warnings(stderr: str) -> list[str]:
    """pg_dump's stderr without the expected notes about TimescaleDB's catalogue."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    keep: list[str] = []
    skip_detail = False
    for line in lines:
        if any(note in line for note in EXPECTED_DUMP_NOTES):
            skip_detail = True
            continue
        if skip_detail and line.startswith(("pg_dump: detail:", "pg_dump:   ")):
            continue
        skip_detail = False
        keep.append(redact(line))
    return keep


def major_version(text: str) -> int | None:
    """15 from "15.20 (Debian 15.20-0+deb12u1)" or "pg_dump (PostgreSQL) 15.20"."""
    for word in text.replace("(", " ").replace(")", " ").split():
        head = word.split(".")[0]
        if head.isdigit() and "." in word:
            return int(head)
    return None


def connect(target: Target, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A plain (sync) connection; a failure becomes one line naming the fix."""
    try:
        return psycopg.connect(target.dsn(), autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise OpsError(
            f"cannot reach PostgreSQL at {target.where} ({describe(exc)}); start it with "
            "`ioc services up` or check IOC_DATABASE_URL / IOC_PG_PORT"
        ) from None


def scalar(conn: psycopg.Connection[Any], query: Any, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]
