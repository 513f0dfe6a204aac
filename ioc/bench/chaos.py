"""``ioc bench chaos``: the whole centre under steady load while a seeded schedule of faults
hits it; nothing acknowledged may be lost, nothing stored twice, no alert opened twice, no
websocket event missed or out of order. See docs/reliability.md.

On an isolated stack (own PostgreSQL+TimescaleDB and Mosquitto): two ingest workers, the alert
engine, two API processes, websocket clients that keep resuming with ``since``, a publisher of
QoS 1 readings with per-device sequence numbers (``ioc-sim`` login, one connection), alert
episodes on fresh probe devices and a producer of stream events. Faults, one at a time in a
seeded order, each followed by a wait for recovery (``recovery_s``: from the fault until the
faulted part is back and the newest stored reading is at most ``LAG_OK_S`` old):

- ``kill_ingest``: kill -9 an ingest worker, restart it under the same client id;
- ``kill_alerts``: kill -9 the alert engine, restart it;
- ``kill_api``: kill -9 an API process (its clients resume on the other one), restart it;
- ``restart_postgres``: stop (fast shutdown) and start PostgreSQL;
- ``restart_mosquitto``: stop (SIGTERM: the broker saves its state) and start Mosquitto;
- ``malformed_flood``: a burst of malformed payloads (each must become a dead letter);
- ``freeze_ws`` (long run): one client stops reading for 30 s with its socket open;
- ``kill9_mosquitto`` (long run or ``IOC_CHAOS_BROKER_KILL=1``): kill -9 the broker, start it;
  ``kill9_mosquitto_backlog``: the same after both workers stalled for ``BACKLOG_S`` (SIGSTOP),
  so the broker holds a queue of acknowledged readings when it dies. What these lose is the
  documented window of Mosquitto's persistence, reported apart (``lost_in_broker_kill_window``:
  readings published from one autosave interval before the kill until the broker is back).

Options (``ioc bench`` has only ``--quick``; the rest are environment variables, or the flags
of ``python -m ioc.bench.chaos``): ``IOC_CHAOS_SECONDS``, ``IOC_CHAOS_SEED``,
``IOC_CHAOS_RATE`` (readings a second), ``IOC_CHAOS_SUBSCRIPTION`` (``plain``: both workers
subscribe plainly and the unique key absorbs the second copy; ``shared``: an MQTT v5 shared
subscription), ``IOC_CHAOS_BROKER_KILL``.

``ratio`` = unique readings stored / readings the broker acknowledged (1.0: nothing lost).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from ioc.bench import chaos_load as load
from ioc.bench.common import isolated_stack, spawn, wait_http
from ioc.config import Settings

LAG_OK_S = 3.0
BACKLOG_S = 5.0
AUTOSAVE_S = 60.0  # Mosquitto's autosave_interval (ioc/services/mosquitto.py)
RECOVERY_TIMEOUT_S = 90.0
QUICK_FAULTS = [
    "kill_ingest",
    "kill_alerts",
    "kill_api",
    "restart_postgres",
    "restart_mosquitto",
    "malformed_flood",
]
LONG_EXTRA = ["freeze_ws", "kill_ingest", "kill_api", "restart_mosquitto", "kill_alerts"]
BACKGROUND_DEVICES = 100
PROBE_DEVICES = 100


class Proc:
    """One child ``ioc`` process the harness kills and restarts (its own supervisor)."""

    def __init__(self, settings: Settings, name: str, args: list[str], logs: Path, ready: str,
                 **env: str) -> None:  # fmt: skip
        self.settings, self.name, self.args, self.logs = settings, name, args, logs
        self.ready, self.env, self.generation = ready, env, 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.unexpected_exits = 0

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}.{self.generation}.log"

    def start(self) -> None:
        self.generation += 1
        self.proc = spawn(self.settings, *self.args, log=self.log, **self.env)

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        if self.ready.startswith("http"):
            wait_http(self.ready, self.proc, timeout)
            return
        deadline = time.monotonic() + timeout
        while self.ready not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready ({self.ready!r}); see {self.log}")
            time.sleep(0.1)

    def is_ready(self) -> bool:
        try:
            self.wait_ready(0)
        except RuntimeError:
            return False
        return True

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def check(self) -> None:
        """Restart a process that died by itself (counted: it should not happen)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits += 1
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Chaos:
    def __init__(self, bench: Settings, logs: Path, *, rate: float, subscription: str) -> None:
        from ioc.services import LocalServices

        self.bench, self.logs = bench, logs
        self.services = LocalServices(bench)
        rules = logs / "rules.yaml"
        rules.write_text(load.RULES)
        common = {"IOC_RULES_FILE": str(rules), "IOC_LOG_LEVEL": "INFO"}
        share = "ioc-ingest" if subscription == "shared" else ""
        self.copies = 1 if share else 2  # plain: each worker stores its own dead letter
        self.ingest = [
            Proc(
                bench,
                f"ingest{k}",
                ["ingest", "mqtt"],
                logs,
                "mqtt connected",
                **common,
                IOC_MQTT_SHARE_GROUP=share,
                IOC_MQTT_CLIENT_ID=f"chaos-ingest-{k}",
            )  # fmt: skip
            for k in range(2)
        ]
        self.alerts = Proc(bench, "alerts", ["alerts"], logs, "", **common)
        self.api_ports = [bench.api_port, _free()]
        self.apis = [
            Proc(
                bench,
                f"api{k}",
                ["api"],
                logs,
                f"http://127.0.0.1:{port}/api/v1/health",
                **common,
                IOC_API_PORT=str(port),
            )  # fmt: skip
            for k, port in enumerate(self.api_ports)
        ]
        self.procs = [*self.ingest, self.alerts, *self.apis]
        devices = [f"ts-{i + 1:05d}" for i in range(BACKGROUND_DEVICES)]
        probes = [f"ts-{BACKGROUND_DEVICES + i + 1:05d}" for i in range(PROBE_DEVICES)]
        self.publisher = load.Publisher(bench, devices, probes, rate, episode_every_s=6.0)
        self.events = load.EventProducer(bench, rate=5.0)
        ws = [f"ws://127.0.0.1:{p}/api/v1/stream" for p in self.api_ports]
        self.screens = load.Screens(
            bench,
            [f"http://127.0.0.1:{p}" for p in self.api_ports],
            [
                load.WsClient("all-a", ws),
                load.WsClient("all-b", ws[::-1]),
                load.WsClient("alerts-a", ws, "kind=alert.", "alert."),
                load.WsClient("alerts-b", ws[::-1], "kind=alert.", "alert."),
            ],
        )
        self.lag = load.LagProbe(bench)
        self.flooded = 0
        # (label, from, to): wall-clock window of each broker kill -9
        self.broker_kills: list[tuple[str, float, float]] = []
        self.recovery: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------- faults ---

    def inject(self, fault: str, rng: random.Random) -> tuple[str, Proc | None]:
        """Do ``fault``; returns a label and the process that must be back for recovery."""
        if fault == "kill_ingest":
            p = rng.choice(self.ingest)
            p.kill9()
            time.sleep(1.0)
            p.start()
            return f"kill_ingest:{p.name}", p
        if fault == "kill_alerts":
            self.alerts.kill9()
            time.sleep(1.0)
            self.alerts.start()
            return "kill_alerts", self.alerts
        if fault == "kill_api":
            p = rng.choice(self.apis)
            p.kill9()
            time.sleep(2.0)  # its clients resume on the other one meanwhile
            p.start()
            return f"kill_api:{p.name}", p
        if fault == "restart_postgres":
            self.services.postgres.stop()
            time.sleep(2.0)
            self.services.postgres.start()
            return "restart_postgres", None
        if fault == "restart_mosquitto":
            self.services.mosquitto.stop()
            time.sleep(1.0)
            self.services.mosquitto.start()
            return "restart_mosquitto", None
        if fault in ("kill9_mosquitto", "kill9_mosquitto_backlog"):
            backlog = fault.endswith("backlog")
            if backlog:  # the workers stall (a slow database): the broker queues for them
                for p in self.ingest:
                    assert p.proc is not None
                    p.proc.send_signal(signal.SIGSTOP)
                time.sleep(BACKLOG_S)
            pid = self.services.mosquitto.running()
            t0 = time.time()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            if backlog:
                for p in self.ingest:
                    assert p.proc is not None
                    p.proc.send_signal(signal.SIGCONT)
            time.sleep(1.0)
            self.services.mosquitto.start()
            label = f"{len(self.recovery) + 1}:{fault}"
            self.broker_kills.append((label, t0 - AUTOSAVE_S - 1.0, time.time()))
            return fault, None
        if fault == "malformed_flood":
            self.flooded += load.flood(self.bench, f"ts-{BACKGROUND_DEVICES:05d}", 2000)
            return "malformed_flood", None
        if fault == "freeze_ws":
            c = rng.choice(self.screens.clients)
            c.freeze_until = time.monotonic() + 30
            time.sleep(30)
            return f"freeze_ws:{c.name}", None
        raise ValueError(fault)

    def wait_recovered(self, started: float, proc: Proc | None) -> float | None:
        deadline = started + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            for p in self.procs:
                p.check()
            lag = self.lag.current()
            if (proc is None or proc.is_ready()) and lag is not None and lag <= LAG_OK_S:
                return round(time.monotonic() - started, 2)
            time.sleep(0.25)
        return None

    # ----------------------------------------------------------------------------- run ---

    def run(self, seconds: float, faults: list[str], rng: random.Random) -> None:
        for p in self.procs:
            p.start()
        for p in self.procs:
            p.wait_ready()
        self.lag.start()
        self.events.start()
        self.publisher.start()
        self.screens.start()
        time.sleep(5.0)  # steady state before the first fault
        t_end = time.monotonic() + seconds
        gap = max(5.0, (seconds - 10) / max(1, len(faults)))
        for fault in faults:
            slot = time.monotonic() + gap
            started = time.monotonic()
            label, proc = self.inject(fault, rng)
            self.recovery.append({"fault": label, "recovery_s": self.wait_recovered(started, proc)})
            while time.monotonic() < min(slot, t_end):
                for p in self.procs:
                    p.check()
                time.sleep(0.25)
        while time.monotonic() < t_end:
            time.sleep(0.25)
        self.publisher.stop_publishing.set()
        self.publisher.join(200)
        self.events.stop.set()
        self.events.join(30)
        self._drain()
        self.screens.stop.set()
        self.screens.join(30)
        self.lag.stop.set()
        self.lag.join(10)

    def _drain(self, timeout: float = 90.0) -> None:
        """Until every acknowledged reading is stored (or no progress for 20 s) and every
        client has caught up with the events table."""
        want = len(self.publisher.acknowledged())
        deadline, last, last_change = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_change < 20:
            n = _scalar(self.bench, "SELECT count(*) FROM traffic_observations")
            if n >= want:
                break
            if n != last:
                last, last_change = n, time.monotonic()
            time.sleep(0.5)
        time.sleep(3.0)  # the engine's last transitions
        top = _scalar(self.bench, "SELECT coalesce(max(id), 0) FROM events")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all((c.last or 0) >= self._last_expected(c, top) for c in self.screens.clients):
                break
            time.sleep(0.5)

    def _last_expected(self, c: load.WsClient, top: int) -> int:
        if c.kind_prefix is None:
            return top
        return _scalar(
            self.bench,
            "SELECT coalesce(max(id), 0) FROM events WHERE id <= %s AND kind LIKE %s",
            (top, c.kind_prefix + "%"),
        )

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def _free() -> int:
    from ioc.bench.common import free_port

    return free_port()


def _scalar(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(settings.dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    seconds = float(os.environ.get("IOC_CHAOS_SECONDS") or (90 if quick else 600))
    seed = int(os.environ.get("IOC_CHAOS_SEED") or 1)
    rate = float(os.environ.get("IOC_CHAOS_RATE") or (200 if quick else 500))
    subscription = os.environ.get("IOC_CHAOS_SUBSCRIPTION") or "plain"
    broker_kill = os.environ.get("IOC_CHAOS_BROKER_KILL", "" if quick else "1") == "1"
    rng = random.Random(seed)
    faults = list(QUICK_FAULTS)
    if not quick:
        faults += LONG_EXTRA
    if broker_kill:
        faults += ["kill9_mosquitto", "kill9_mosquitto_backlog"]
    rng.shuffle(faults)
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-chaos-"))
    from ioc.bench.chaos_verdict import verdict

    with isolated_stack(settings, sensors=BACKGROUND_DEVICES + PROBE_DEVICES) as bench:
        chaos = Chaos(bench, logs, rate=rate, subscription=subscription)
        try:
            chaos.run(seconds, faults, rng)
            result = verdict(chaos)
        finally:
            chaos.stop()
    out = {
        "bench": "chaos",
        "seconds": seconds,
        "seed": seed,
        "rate": rate,
        "subscription": subscription,
        "faults": [r["fault"] for r in chaos.recovery],
        **result,
        "logs": str(logs),
    }
    (logs / "result.json").write_text(json.dumps(out, ensure_ascii=False))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m ioc.bench.chaos")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--rate", type=float)
    ap.add_argument("--subscription", choices=("plain", "shared"))
    ap.add_argument("--broker-kill", action="store_true")
    a = ap.parse_args()
    for name, value in (("SECONDS", a.seconds), ("SEED", a.seed), ("RATE", a.rate),
                        ("SUBSCRIPTION", a.subscription)):  # fmt: skip
        if value is not None:
            os.environ[f"IOC_CHAOS_{name}"] = str(value)
    if a.broker_kill:
        os.environ["IOC_CHAOS_BROKER_KILL"] = "1"
    from ioc.config import get_settings

    print(json.dumps(main(get_settings(), a.quick), ensure_ascii=False), flush=True)
