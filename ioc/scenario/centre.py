"""Starting a centre for a scenario (``ioc scenario run --start-centre``, and the test suite).

:func:`isolated_services` gives a scenario PostgreSQL+TimescaleDB and Mosquitto of its own (free
ports, a temporary state directory, migrated), so it never touches a centre you have running.
:class:`Centre` owns the roles a scenario needs as child processes, each with its own log file:
the simulators first, then the ingest workers, and the alert engine last, once every sensor
reports (so the engine's first look is at a healthy province, not at a fleet still connecting).
They stop in reverse order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import yaml

from ioc.bench.common import env_for, free_port, wait_for_line
from ioc.config import METRICS_PORT_FIELDS, Settings
from ioc.scenario.load import load_rules_doc, merged_rules
from ioc.scenario.schema import CentreSpec

READY_TIMEOUT_S = 90.0


class CentreError(RuntimeError):
    """A role did not start; the message names its log file."""


@contextmanager
def isolated_services(settings: Settings) -> Iterator[Settings]:
    """Own PostgreSQL+TimescaleDB and Mosquitto on free ports, migrated; removed afterwards."""
    from ioc.db import migrate
    from ioc.services import LocalServices

    state = Path(tempfile.mkdtemp(prefix="ioc-scenario-"))
    os.chmod(state, 0o755)
    own = settings.model_copy(
        update={
            "state_dir": state,
            "pg_port": free_port(),
            "mqtt_port": free_port(),
            "api_port": free_port(),
            "rtsp_port": free_port(),
            "ingest_metrics_port": 0,
            "database_url": None,
        }
    )
    svc = LocalServices(own)
    try:
        svc.up()
        migrate.upgrade(own.sqlalchemy_url)
        yield own
    finally:
        svc.purge()
        shutil.rmtree(state, ignore_errors=True)


def write_rules(settings: Settings, spec: CentreSpec, directory: Path) -> Path:
    """The rules file with the scenario's changes applied (the file itself when none)."""
    if not spec.rules:
        return settings.rules_file
    doc = merged_rules(load_rules_doc(settings.rules_file), spec.rules)
    path = directory / "rules.yaml"
    path.write_text(
        "# Generated for a scenario: "
        + str(settings.rules_file)
        + " with its `centre.rules`.\n"
        + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return path


class Centre:
    """The roles a scenario needs, as child processes of this one."""

    def __init__(
        self, settings: Settings, spec: CentreSpec, *, log_dir: Path, rules_file: Path | None = None
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.rules_file = rules_file or write_rules(settings, spec, log_dir)
        self.camera_port = free_port()
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        s, spec = self.settings, self.spec
        extra = {
            "IOC_RULES_FILE": str(self.rules_file),
            "IOC_SIM_SENSORS": str(spec.sensors),
            "IOC_SIM_INTERVAL_SECONDS": str(spec.interval_s),
            "IOC_SIM_CAMERAS": str(spec.cameras),
            "IOC_SIM_CAMERA_SIZE": "320x180",
            "IOC_SIM_CAMERA_FPS": "5",
            "IOC_SIM_CAMERA_DAY_SECONDS": str(spec.camera_day_s),
            "IOC_CAMERA_HEALTH_SECONDS": "1",
            "IOC_CAMERA_LEASE_SECONDS": "6",
            "IOC_CAMERA_POOL": "default",
            "IOC_RTSP_CONTROL_PORT": str(self.camera_port),
            # No metrics servers: fixed ports would clash with a centre already running here.
            **{f"IOC_{name.upper()}": "0" for name in METRICS_PORT_FIELDS},
            # A session of its own: never resume one that queued another centre's messages.
            "IOC_MQTT_CLIENT_ID": f"ioc-ingest-scenario-{uuid.uuid4().hex[:8]}",
            "IOC_MQTT_SHARE_GROUP": "",
        }
        if s.database_url:
            extra["IOC_DATABASE_URL"] = s.database_url
        return env_for(s, **extra)

    # ------------------------------------------------------------------------- lifecycle ---

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ioc.cli", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            )
        self.procs.append((name, proc, log))
        return proc

    def _run(self, name: str, *args: str, timeout: float = 60.0) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [sys.executable, "-m", "ioc.cli", *args],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
            )  # fmt: skip
        if done.returncode != 0:
            raise CentreError(f"`ioc {' '.join(args)}` failed (exit {done.returncode}); see {log}")

    def start(self, timeout: float = READY_TIMEOUT_S) -> Centre:
        try:
            self._run("seed", "seed")
            if self.spec.cameras:
                self._spawn("simulate-cameras", "simulate", "cameras")
            self._spawn("simulate-traffic", "simulate", "traffic")
            self._spawn("ingest-mqtt", "ingest", "mqtt")
            if self.spec.cameras:
                self._spawn("ingest-rtsp", "ingest", "rtsp")
            self._wait_ready(timeout)
            alerts = self._spawn("alerts", "alerts")
            wait_for_line(alerts, self.log_dir / "alerts.log", "alert engine running", 30)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Every sensor online with a fresh reading, every camera assessed ``ok``."""
        deadline = time.monotonic() + timeout
        fresh = max(3.0 * self.spec.interval_s, 3.0)
        state = "nothing yet"
        with psycopg.connect(self.settings.dsn, autocommit=True, connect_timeout=5) as conn:
            while True:
                self.check()
                row = conn.execute(
                    """SELECT count(*) FILTER (WHERE d.kind = 'traffic_sensor' AND s.online
                                 AND s.last_seen > now() - make_interval(secs => %s)),
                              count(*) FILTER (WHERE d.kind = 'traffic_sensor'),
                              count(*) FILTER (WHERE d.kind = 'camera' AND s.last->>'status' = 'ok'),
                              count(*) FILTER (WHERE d.kind = 'camera')
                       FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
                       WHERE d.enabled""",
                    (fresh,),
                ).fetchone()
                assert row is not None
                sensors_ok, sensors, cams_ok, cams = (int(v) for v in row)
                state = f"{sensors_ok}/{sensors} sensors reporting, {cams_ok}/{cams} cameras ok"
                if sensors and sensors_ok == sensors and cams_ok == cams:
                    return
                if time.monotonic() > deadline:
                    raise CentreError(f"the centre was not ready within {timeout:.0f} s ({state});"
                                      f" logs in {self.log_dir}")  # fmt: skip
                time.sleep(0.5)

    def check(self) -> None:
        for name, proc, log in self.procs:
            if proc.poll() is not None:
                raise CentreError(f"{name} exited with code {proc.returncode}; see {log}")

    def stop(self, timeout: float = 15.0) -> None:
        for _name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []

    def __enter__(self) -> Centre:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


def merge_specs(specs: list[tuple[str, CentreSpec]]) -> CentreSpec:
    """One centre for scenarios run together: the same fleet, the most cameras, the longest
    camera day, and every rule change (two scenarios may not change one field differently)."""
    first_name, first = specs[0]
    rules: dict[str, dict[str, Any]] = {}
    owner: dict[tuple[str, str], str] = {}
    for name, spec in specs:
        if (spec.sensors, spec.interval_s) != (first.sensors, first.interval_s):
            raise CentreError(
                f"{name} wants {spec.sensors} sensors every {spec.interval_s:g} s, {first_name}"
                f" {first.sensors} every {first.interval_s:g} s: run them apart"
            )
        for rid, changes in spec.rules.items():
            for key, value in changes.items():
                mine = rules.setdefault(rid, {})
                if key in mine and mine[key] != value:
                    raise CentreError(
                        f"{name} sets {rid}.{key} = {value!r}, {owner[(rid, key)]} sets"
                        f" {mine[key]!r}: run them apart"
                    )
                mine[key] = value
                owner[(rid, key)] = name
    return first.model_copy(
        update={
            "cameras": max(s.cameras for _, s in specs),
            "camera_day_s": max(s.camera_day_s for _, s in specs),
            "rules": rules,
        }
    )
