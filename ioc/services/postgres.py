"""The project's own PostgreSQL 15 + TimescaleDB cluster (data under the state dir).

Layout (``<runtime>`` is the state dir, or its /var/lib/ioc fallback when root; see base.py)::

    <runtime>/pg/data             the cluster (initdb -E UTF8 --locale=C.UTF-8)
    <runtime>/pg/data/ioc.conf    our settings, rewritten on every start (included last)
    <runtime>/pg/run              unix socket directory (mode 0700: only the PG user and root)
    <runtime>/pg/postgresql.log   server log (pg_ctl -l)

Authentication: trust on the unix socket (reachable only by the cluster's OS user and root),
scram-sha-256 on 127.0.0.1. The application role gets SUPERUSER: this is a local dev cluster,
and the app must be able to CREATE EXTENSION.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ioc.config import Settings
from ioc.services.base import (
    RunAs,
    ServiceError,
    ServiceStatus,
    cmdline,
    log,
    log_size,
    log_tail,
    pid_alive,
    port_free,
    run,
)

PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
LISTEN_HOST = "127.0.0.1"
BOOTSTRAP_SUPERUSER = "postgres"
# AF_UNIX paths are limited to 107 bytes; PG also creates "<socket>.lock" next to the socket.
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535.lock")
_SETUP_HINT = "run `make setup` (scripts/provision.sh)"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresService:
    name = "postgresql"
    env_var = "IOC_PG_PORT"

    def __init__(
        self, settings: Settings, runtime_dir: Path, run_as: RunAs, bin_dir: Path = PG_BIN_DIR
    ) -> None:
        self.settings = settings
        self.run_as = run_as
        self.bin_dir = bin_dir
        self.root = runtime_dir / "pg"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgresql.log"
        socket_dir = self.root / "run"
        if len(str(socket_dir)) > _MAX_SOCKET_DIR:
            digest = hashlib.sha256(str(socket_dir).encode()).hexdigest()[:12]
            socket_dir = Path(tempfile.gettempdir()) / f"ioc-pg-{digest}"
        self.socket_dir = socket_dir

    @property
    def port(self) -> int:
        return self.settings.pg_port

    # ------------------------------------------------------------------------ inspection ---

    def preflight(self) -> None:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (self.bin_dir / tool).is_file():
                raise ServiceError(
                    f"PostgreSQL 15 binaries not found in {self.bin_dir}: {_SETUP_HINT}"
                )
        extension = self.bin_dir.parent / "lib" / "timescaledb.so"
        if not extension.is_file():
            raise ServiceError(f"timescaledb extension missing ({extension}): {_SETUP_HINT}")

    def running(self) -> tuple[int, int | None] | None:
        """(pid, port) of the postmaster serving our data dir, if it is alive."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(pid) or "postgres" not in cmdline(pid):
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        return pid, port

    def status(self) -> ServiceStatus:
        info = self.running()
        if info is not None:
            pid, port = info
            detail = f"data {self.data_dir}; log {self.log_path}"
            return ServiceStatus(self.name, True, pid, port or self.port, detail)
        detail = "stopped"
        if not port_free(LISTEN_HOST, self.port):
            detail += f"; port {self.port} is in use by another program"
        return ServiceStatus(self.name, False, None, self.port, detail)

    # --------------------------------------------------------------------------- control ---

    def start(self) -> None:
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        self._write_conf()
        argv = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path)]
        argv += ["-w", "-t", "60", "start"]
        offset = log_size(self.log_path)
        try:
            run(self.run_as.cmd(argv), "PostgreSQL start", timeout=90, cwd=self.root)
        except ServiceError as exc:
            reason = log_tail(self.log_path, ("FATAL", "PANIC"), since=offset) or str(exc)
            if self.running() is not None:  # pg_ctl gave up waiting but the server lives on
                self.stop()
            raise ServiceError(
                f"PostgreSQL failed to start: {reason} (log: {self.log_path})"
            ) from None
        log.info("postgresql started", port=self.port, data_dir=str(self.data_dir))

    def stop(self) -> bool:
        """Fast shutdown; False when it was not running."""
        if self.running() is None:
            return False
        argv = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast"]
        argv += ["-w", "-t", "60", "stop"]
        run(self.run_as.cmd(argv), "PostgreSQL stop", timeout=90, cwd=self.root)
        log.info("postgresql stopped", data_dir=str(self.data_dir))
        return True

    def bootstrap(self) -> str:
        """Create/refresh the app role, its database and the timescaledb extension (idempotent).

        Returns the TimescaleDB license ("apache" for the Debian build, "timescale" in the
        production image).
        """
        s = self.settings
        where = make_conninfo(host=str(self.socket_dir), port=self.port, connect_timeout=10)
        role, db = sql.Identifier(s.pg_user), sql.Identifier(s.pg_database)
        try:
            with psycopg.connect(
                where, user=BOOTSTRAP_SUPERUSER, dbname="postgres", autocommit=True
            ) as conn:
                found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (s.pg_user,))
                stmt = (
                    "ALTER ROLE {} WITH LOGIN SUPERUSER PASSWORD {}"
                    if found.fetchone()
                    else "CREATE ROLE {} WITH LOGIN SUPERUSER PASSWORD {}"
                )
                conn.execute(sql.SQL(stmt).format(role, sql.Literal(s.pg_password)))
                found = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (s.pg_database,)
                )
                if not found.fetchone():
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            with psycopg.connect(
                where, user=s.pg_user, dbname=s.pg_database, autocommit=True
            ) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                row = conn.execute("SHOW timescaledb.license").fetchone()
        except psycopg.errors.UndefinedFile:
            raise ServiceError(f"timescaledb extension missing: {_SETUP_HINT}") from None
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            raise ServiceError(f"PostgreSQL setup of role/database failed: {reason}") from None
        license_ = str(row[0]) if row else "unknown"
        log.info("postgresql ready", database=s.pg_database, timescaledb_license=license_)
        return license_

    # ----------------------------------------------------------------------------- files ---

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.run_as.chown(self.root)
        if self.log_path.exists():
            self.run_as.chown(self.log_path)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self.run_as.chown(self.socket_dir)
        owner = self.socket_dir.stat().st_uid
        expected = self.root.stat().st_uid
        if owner != expected:  # e.g. a pre-created directory in /tmp
            raise ServiceError(
                f"socket directory {self.socket_dir} belongs to uid {owner}; remove it or use "
                "a shorter IOC_STATE_DIR"
            )
        self.socket_dir.chmod(0o700)

    def _initdb(self) -> None:
        argv = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-E", "UTF8"]
        argv += ["--locale=C.UTF-8", "-U", BOOTSTRAP_SUPERUSER, "--auth-local=trust"]
        argv += ["--auth-host=scram-sha-256", "--no-instructions"]
        log.info("postgresql initdb", data_dir=str(self.data_dir))
        run(self.run_as.cmd(argv), "PostgreSQL initdb", timeout=120, cwd=self.root)

    def _write_conf(self) -> None:
        conf = self.data_dir / "ioc.conf"
        conf.write_text(
            "# Written by ioc.services on every start: change IOC_* settings, not this file.\n"
            f"listen_addresses = {_quote(LISTEN_HOST)}\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = {_quote(str(self.socket_dir))}\n"
            "unix_socket_permissions = 0700\n"
            "shared_preload_libraries = 'timescaledb'\n"
            "timescaledb.telemetry_level = off\n"
            "fsync = on\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
            "max_connections = 200\n"
            "max_locks_per_transaction = 256\n"
            # One TimescaleDB scheduler per database plus its jobs: the tests and restores make
            # many databases, and the default 8 worker slots leave some without a scheduler.
            "max_worker_processes = 40\n"
            "timescaledb.max_background_workers = 24\n"
        )
        self.run_as.chown(conf)
        main = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'ioc.conf'"
        if include not in main.read_text():
            with main.open("a") as fh:
                fh.write(f"\n# Project settings (ioc.services)\n{include}\n")
