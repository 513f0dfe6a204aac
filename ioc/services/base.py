"""Shared pieces of the local service managers: errors, status, processes, ports, OS users.

The local services (PostgreSQL+TimescaleDB, Mosquitto) are plain processes started from the
project's own state directory. When we run as root they run as their own system users
(``postgres``, ``mosquitto``), so their directories must be reachable by those users.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("ioc.services")

RUNUSER = "/usr/sbin/runuser"
FALLBACK_ROOT = Path("/var/lib/ioc")
RUNTIME_MARKER = "RUNTIME_DIR"


class ServiceError(Exception):
    """A local service could not be started/stopped. The message is one line: cause and fix."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    port: int
    detail: str


def is_root() -> bool:
    return os.geteuid() == 0


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# ------------------------------------------------------------------------------ OS users ---


@dataclass(frozen=True)
class RunAs:
    """The OS user a service runs as: ``None`` means the current user (no switching)."""

    user: str | None

    @classmethod
    def service_user(cls, name: str) -> RunAs:
        """``name`` when we are root (services refuse to / should not run as root), else us."""
        if not is_root():
            return cls(None)
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ServiceError(
                f"system user {name!r} does not exist: run `make setup` (scripts/provision.sh)"
            ) from None
        return cls(name)

    def cmd(self, argv: list[str]) -> list[str]:
        return argv if self.user is None else [RUNUSER, "-u", self.user, "--", *argv]

    def chown(self, path: Path) -> None:
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        os.chown(path, entry.pw_uid, entry.pw_gid)

    def chown_tree(self, root: Path) -> None:
        if self.user is None:
            return
        self.chown(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                self.chown(Path(dirpath) / name)

    def can_reach(self, path: Path) -> bool:
        """Whether this user may enter ``path`` (search permission on it and all parents)."""
        if self.user is None:
            return True
        probe = subprocess.run(
            self.cmd(["test", "-x", str(path)]), capture_output=True, timeout=10, check=False
        )
        return probe.returncode == 0


def run(argv: list[str], what: str, *, timeout: float = 120, cwd: Path | None = None) -> str:
    """Run a command; on failure raise ServiceError with its last output line."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except FileNotFoundError:
        raise ServiceError(
            f"{what}: {argv[0]} not found: run `make setup` (scripts/provision.sh)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"{what}: `{Path(argv[0]).name}` timed out after {timeout:.0f}s"
        ) from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ServiceError(f"{what}: {one_line(reason)}")
    return proc.stdout


# --------------------------------------------------------------------------- state layout ---


def fallback_dir(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return FALLBACK_ROOT / digest


def resolve_runtime_dir(state_dir: Path, users: list[RunAs], *, create: bool) -> Path:
    """Where the services keep their files: the state dir, or a root-only fallback.

    As root, PostgreSQL and Mosquitto run as their own users; a state dir under a 0700 parent
    (a checkout under /root, pytest's /tmp/pytest-of-root) is unreachable for them. Then the
    services live under /var/lib/ioc/<hash of the state dir path>/, recorded in
    ``<state>/RUNTIME_DIR`` so every later call finds it again.
    """
    marker = state_dir / RUNTIME_MARKER
    if marker.is_file():
        recorded = marker.read_text().strip()
        if recorded:
            return Path(recorded)
    if create:
        state_dir.mkdir(parents=True, exist_ok=True)
    if not state_dir.is_dir() or all(u.can_reach(state_dir) for u in users):
        return state_dir
    target = fallback_dir(state_dir)
    if create:
        FALLBACK_ROOT.mkdir(mode=0o755, exist_ok=True)
        target.mkdir(mode=0o755, exist_ok=True)
        marker.write_text(f"{target}\n")
        names = ", ".join(u.user or "?" for u in users)
        log.warning(
            "state dir not reachable by service users; using fallback",
            state_dir=str(state_dir),
            users=names,
            runtime_dir=str(target),
        )
    return target


# ------------------------------------------------------------------------------ processes ---


def pid_alive(pid: int) -> bool:
    """True when ``pid`` is a live process (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc/self").exists()  # vanished, unless there is no /proc at all
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: Path, pattern: tuple[str, ...] = (), lines: int = 40, since: int = 0) -> str:
    """The most telling line written after byte ``since``: the first matching ``pattern`` (the
    root cause, usually), else the last line."""
    try:
        with path.open("rb") as fh:
            fh.seek(since)
            text = fh.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    for line in text:
        for p in pattern:
            if p in line:
                return one_line(line[line.index(p) :])
    return one_line(text[-1]) if text else ""


# ---------------------------------------------------------------------------------- ports ---


def port_free(host: str, port: int) -> bool:
    """Whether we could listen on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_taken_error(name: str, port: int, env_var: str) -> ServiceError:
    return ServiceError(
        f"{name}: port {port} is in use by another program; set {env_var} to a free port"
    )
