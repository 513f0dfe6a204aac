"""The project's own Mosquitto broker (config, logins and persistence under the state dir).

Layout (``<runtime>`` is the state dir, or its /var/lib/ioc fallback when root)::

    <runtime>/mosquitto/mosquitto.conf   generated on every `up`
    <runtime>/mosquitto/passwd           password file (0600): service logins, and device logins
                                         added by `ioc seed` / `ioc mqtt sync-logins`
    <runtime>/mosquitto/acl              topic rights (ioc/mqtt_logins.py generates both)
    <runtime>/mosquitto/data/            persistence (sessions, queued QoS 1/2 messages)
    <runtime>/mosquitto/mosquitto.log    broker log; mosquitto.pid

Started as root, mosquitto drops to user ``mosquitto``: the whole directory belongs to it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ioc import mqtt_logins
from ioc.config import Settings
from ioc.mqtt_logins import SyncResult
from ioc.services.base import (
    RunAs,
    ServiceError,
    ServiceStatus,
    cmdline,
    log,
    log_size,
    log_tail,
    pid_alive,
    port_accepts,
    port_free,
    wait_until,
)

MOSQUITTO = Path("/usr/sbin/mosquitto")
LISTEN_HOST = "127.0.0.1"
_SETUP_HINT = "run `make setup` (scripts/provision.sh)"


class MosquittoService:
    name = "mosquitto"
    env_var = "IOC_MQTT_PORT"

    def __init__(self, settings: Settings, runtime_dir: Path, run_as: RunAs) -> None:
        self.settings = settings
        self.run_as = run_as
        self.root = runtime_dir / "mosquitto"
        self.conf_path = self.root / "mosquitto.conf"
        self.passwd_path = self.root / "passwd"
        self.acl_path = self.root / "acl"
        self.pid_path = self.root / "mosquitto.pid"
        self.log_path = self.root / "mosquitto.log"
        self.data_dir = self.root / "data"

    @property
    def port(self) -> int:
        return self.settings.mqtt_port

    # ------------------------------------------------------------------------ inspection ---

    def preflight(self) -> None:
        if not MOSQUITTO.is_file():
            raise ServiceError(f"{MOSQUITTO} not found (Mosquitto not installed): {_SETUP_HINT}")

    def running(self) -> int | None:
        """The broker's pid when the one started from our config is alive."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if pid_alive(pid) and str(self.conf_path) in cmdline(pid):
            return pid
        return None

    def configured_port(self) -> int | None:
        """The listener port of the config a running broker was started with."""
        try:
            match = re.search(r"^listener (\d+)", self.conf_path.read_text(), re.M)
        except OSError:
            return None
        return int(match.group(1)) if match else None

    def status(self) -> ServiceStatus:
        pid = self.running()
        if pid is not None:
            detail = f"config {self.conf_path}; log {self.log_path}"
            return ServiceStatus(self.name, True, pid, self.configured_port() or self.port, detail)
        detail = "stopped"
        if not port_free(LISTEN_HOST, self.port):
            detail += f"; port {self.port} is in use by another program"
        return ServiceStatus(self.name, False, None, self.port, detail)

    # --------------------------------------------------------------------------- control ---

    def start(self) -> None:
        self.write_files()
        self.pid_path.unlink(missing_ok=True)
        stderr_path = self.root / "mosquitto.stderr"
        offset = log_size(self.log_path)
        with stderr_path.open("w") as err:
            code = subprocess.call(
                [str(MOSQUITTO), "-c", str(self.conf_path), "-d"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=self.root,
                timeout=30,
                preexec_fn=_raise_open_files_limit,
            )
        if code != 0:
            reason = (
                log_tail(stderr_path, ("Error",))
                or log_tail(self.log_path, ("Error",), since=offset)
                or f"exit status {code}"
            )
            raise ServiceError(f"Mosquitto failed to start: {reason} (config: {self.conf_path})")

        def ready() -> bool:
            return self.running() is not None and port_accepts(LISTEN_HOST, self.port)

        def gone() -> bool:
            # A pid file being written can be empty for a moment: only a whole pid that is no
            # longer alive means the broker died.
            try:
                pid = int(self.pid_path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return False
            return not pid_alive(pid)

        if not wait_until(lambda: ready() or gone(), timeout=10) or not ready():
            reason = (
                log_tail(self.log_path, ("Error", "error"), since=offset)
                or "no pid file or port not open after 10 s"
            )
            self.stop()
            raise ServiceError(f"Mosquitto failed to start: {reason} (log: {self.log_path})")
        log.info("mosquitto started", port=self.port, config=str(self.conf_path))

    def reload(self) -> None:
        """Re-read logins and ACLs (SIGHUP) after write_files() changed them."""
        pid = self.running()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            log.info("mosquitto reloaded logins and ACLs", pid=pid)

    def stop(self) -> bool:
        """SIGTERM via the pid file, wait, SIGKILL as a last resort. False when not running."""
        pid = self.running()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not pid_alive(pid), timeout=10):
            log.warning("mosquitto did not stop on SIGTERM; killing it", pid=pid)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout=5)
        self.pid_path.unlink(missing_ok=True)
        log.info("mosquitto stopped", pid=pid)
        return True

    # ----------------------------------------------------------------------------- files ---

    def write_files(self) -> bool:
        """(Re)generate config, ACL and the service logins. True when logins or ACLs changed.

        Device logins already in the password file stay (``ioc mqtt sync-logins`` adds them)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self.data_dir.mkdir(exist_ok=True)
        changed = self._write_logins({}).changed
        _write_if_changed(self.conf_path, self._config())
        self.run_as.chown_tree(self.root)
        return changed

    def sync_logins(
        self, device_ids: Iterable[str], *, sim_login: bool | None = None
    ) -> SyncResult:
        """Add (never drop) the devices' logins, then SIGHUP the broker when anything changed."""
        result = self._write_logins(mqtt_logins.device_logins(self.settings, device_ids), sim_login)
        if result.changed:
            self.reload()
        return result

    def _write_logins(self, devices: dict[str, str], sim_login: bool | None = None) -> SyncResult:
        s = self.settings
        sim = mqtt_logins.default_sim_login(s) if sim_login is None else sim_login
        return mqtt_logins.write_login_files(
            self.root,
            mqtt_logins.service_logins(s, sim_login=sim) | devices,
            mqtt_logins.acl_text(s, sim_login=sim),
            keep_others=True,  # one local broker serves several databases (tests, benches)
            chown=self.run_as.chown,
        )

    def _config(self) -> str:
        return (
            "# Generated by ioc.services on every `up`: change IOC_* settings, not this file.\n"
            f"pid_file {self.pid_path}\n"
            "persistence true\n"
            f"persistence_location {self.data_dir}/\n"
            "autosave_interval 60\n"
            "persistent_client_expiration 14d\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "log_timestamp_format %Y-%m-%dT%H:%M:%S\n"
            "connection_messages true\n"
            "allow_anonymous false\n"
            f"password_file {self.passwd_path}\n"
            f"acl_file {self.acl_path}\n"
            "# Ingest acks QoS 1 messages only once a batch is durable: let many be in flight.\n"
            "max_inflight_messages 1000\n"
            "# Per-client queue for offline persistent sessions; beyond it messages are dropped.\n"
            "max_queued_messages 100000\n"
            "max_queued_bytes 268435456\n"
            "set_tcp_nodelay true\n"
            f"listener {self.port} {LISTEN_HOST}\n"
        )


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.write_text(text)
    return True


def _raise_open_files_limit() -> None:
    """One connection per device: let the broker use the hard limit of open files (often 1,024
    soft by default, too few for thousands of sensors). Runs in the child before exec."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
