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
- ``kill_camera_worker``, ``hang_camera`` (with ``--cameras`` > 0, the default): the camera
  simulator and two camera workers run too; see ``ioc.bench.chaos_cameras``. With cameras on,
  every fault's recovery also waits until every camera is leased and has a fresh health row.

Options: ``ioc bench chaos --quick --seconds N --seed S --rate R --subscription plain|shared
--broker-kill --cameras N --camera-lease S --faults a,b`` (``ioc.bench.chaos_options``; each
also an ``IOC_CHAOS_*`` environment variable). ``plain``: both workers subscribe plainly and the
unique key absorbs the second copy; ``shared``: an MQTT v5 shared subscription.

``ratio`` = unique readings stored / readings the broker acknowledged (1.0: nothing lost).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from ioc.bench import chaos_load as load
from ioc.bench.chaos_cameras import RULE as CAMERA_RULE
from ioc.bench.chaos_cameras import Cameras
from ioc.bench.chaos_options import CAMERA_FAULTS, ChaosOptions, add_arguments, given, resolve
from ioc.bench.chaos_proc import Proc
from ioc.bench.common import isolated_stack
from ioc.config import Settings

LAG_OK_S = 3.0
BACKLOG_S = 5.0
AUTOSAVE_S = 60.0  # Mosquitto's autosave_interval (ioc/services/mosquitto.py)
RECOVERY_TIMEOUT_S = 90.0
STARTUP_S = 120.0  # a dozen Python processes starting at once on two busy cores
QUICK_FAULTS = [
    "kill_ingest",
    "kill_alerts",
    "kill_api",
    "restart_postgres",
    "restart_mosquitto",
    "malformed_flood",
    "kill_camera_worker",
    "hang_camera",
]
LONG_EXTRA = [
    "freeze_ws", "kill_ingest", "kill_api", "restart_mosquitto", "kill_alerts",
    "kill_camera_worker", "hang_camera",
]  # fmt: skip
BACKGROUND_DEVICES = 100
PROBE_DEVICES = 100


@dataclass
class Injected:
    """What a fault did: its label, the process that must be ready again, and for a fault held
    on purpose (a hung camera) the moment recovery starts and what else must hold."""

    label: str
    proc: Proc | None = None
    started: float | None = None  # monotonic; default: when the fault began
    back: Callable[[], bool] | None = None


class Chaos:
    def __init__(
        self, bench: Settings, logs: Path, *, rate: float, subscription: str, cameras: int = 0,
        camera_lease_s: float = 8.0,
    ) -> None:  # fmt: skip
        from ioc.services import LocalServices

        self.bench, self.logs = bench, logs
        self.services = LocalServices(bench)
        rules = logs / "rules.yaml"
        rules.write_text(load.RULES + (CAMERA_RULE if cameras else ""))
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
        self.alerts = Proc(bench, "alerts", ["alerts"], logs, "alert engine running", **common)
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
        self.cameras = (
            Cameras(bench, logs, count=cameras, lease_s=camera_lease_s, env=common)
            if cameras
            else None
        )
        cams = [self.cameras.simulator] if self.cameras else []
        workers = self.cameras.workers if self.cameras else []
        # Started in this order, stopped in reverse: the simulator first and last.
        self.procs = [*cams, *self.ingest, self.alerts, *self.apis, *workers]
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

    def inject(self, fault: str, rng: random.Random) -> Injected:
        """Do ``fault``; says what must be back for recovery."""
        if fault == "kill_ingest":
            p = rng.choice(self.ingest)
            p.kill9()
            time.sleep(1.0)
            p.start()
            return Injected(f"kill_ingest:{p.name}", p)
        if fault == "kill_alerts":
            self.alerts.kill9()
            time.sleep(1.0)
            self.alerts.start()
            return Injected("kill_alerts", self.alerts)
        if fault == "kill_api":
            p = rng.choice(self.apis)
            p.kill9()
            time.sleep(2.0)  # its clients resume on the other one meanwhile
            p.start()
            return Injected(f"kill_api:{p.name}", p)
        if fault == "restart_postgres":
            self.services.postgres.stop()
            time.sleep(2.0)
            self.services.postgres.start()
            return Injected("restart_postgres")
        if fault == "restart_mosquitto":
            self.services.mosquitto.stop()
            time.sleep(1.0)
            self.services.mosquitto.start()
            return Injected("restart_mosquitto")
        if fault in CAMERA_FAULTS:
            return self._camera_fault(fault, rng)
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
            return Injected(fault)
        if fault == "malformed_flood":
            self.flooded += load.flood(self.bench, f"ts-{BACKGROUND_DEVICES:05d}", 2000)
            return Injected("malformed_flood")
        if fault == "freeze_ws":
            c = rng.choice(self.screens.clients)
            c.freeze_until = time.monotonic() + 30
            time.sleep(30)
            return Injected(f"freeze_ws:{c.name}")
        raise ValueError(fault)

    def _camera_fault(self, fault: str, rng: random.Random) -> Injected:
        cams = self.cameras
        if cams is None:
            raise ValueError(f"{fault} needs cameras (--cameras 1 or more)")
        if fault == "kill_camera_worker":
            label, p = cams.kill_worker(rng)
            return Injected(label, p)
        hang = cams.hang(rng)  # recovery counts from the clear: the hang's length is ours
        return Injected(
            f"hang_camera:{hang['camera']}",
            started=time.monotonic(),
            back=lambda: cams.hang_recovered(hang) and cams.settled(hang["cleared_at"]),
        )

    def wait_recovered(
        self, started: float, proc: Proc | None, back: Callable[[], bool] | None = None,
        since: datetime | None = None,
    ) -> float | None:  # fmt: skip
        """Seconds from ``started`` until ``proc`` is ready, ingest lag is at most LAG_OK_S,
        ``back`` holds and (cameras on) every camera is leased and watched since ``since``."""
        deadline = started + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            for p in self.procs:
                p.check()
            lag = self.lag.current()
            if (
                (proc is None or proc.is_ready())
                and lag is not None
                and lag <= LAG_OK_S
                and (back is None or back())
                and (self.cameras is None or since is None or self.cameras.settled(since))
            ):
                return round(time.monotonic() - started, 2)
            time.sleep(0.25)
        return None

    # ----------------------------------------------------------------------------- run ---

    def run(self, seconds: float, faults: list[str], rng: random.Random) -> None:
        cams = self.cameras
        workers = cams.workers if cams is not None else []
        if cams is not None:  # the simulator first, so no worker finds its cameras missing
            cams.seed()
            cams.simulator.start()
        for p in self.procs:
            if p not in workers and p.proc is None:
                p.start()
        if cams is not None:
            cams.simulator.wait_ready(STARTUP_S)
            for p in workers:
                p.start()
        for p in self.procs:
            p.wait_ready(STARTUP_S)
        self.lag.start()
        self.events.start()
        self.publisher.start()
        self.screens.start()
        steady = time.monotonic() + 5.0  # steady state before the first fault
        if cams is not None:  # ... with every camera watched
            cams.wait_settled(60.0)
        time.sleep(max(0.0, steady - time.monotonic()))
        t_end = time.monotonic() + seconds
        gap = max(5.0, (seconds - 10) / max(1, len(faults)))
        for fault in faults:
            slot = time.monotonic() + gap
            started, since = time.monotonic(), datetime.now(UTC)
            done = self.inject(fault, rng)
            recovered = self.wait_recovered(done.started or started, done.proc, done.back, since)
            self.recovery.append({"fault": done.label, "recovery_s": recovered})
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


def schedule(opts: ChaosOptions, rng: random.Random) -> list[str]:
    """The faults of the run: ``--faults`` as given, else the mode's faults in seeded order."""
    if opts.faults is not None:
        return list(opts.faults)
    faults = list(QUICK_FAULTS)
    if not opts.quick:
        faults += LONG_EXTRA
    if opts.broker_kill:
        faults += ["kill9_mosquitto", "kill9_mosquitto_backlog"]
    if not opts.cameras:
        faults = [f for f in faults if f not in CAMERA_FAULTS]
    rng.shuffle(faults)
    return faults


def main(settings: Settings, quick: bool, **options: Any) -> dict[str, Any]:
    """``options``: the flags of ``ioc bench chaos`` (``ioc.bench.chaos_options``)."""
    opts = resolve(quick, options)
    rng = random.Random(opts.seed)
    faults = schedule(opts, rng)
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-chaos-"))
    from ioc.bench.chaos_verdict import verdict

    with isolated_stack(settings, sensors=BACKGROUND_DEVICES + PROBE_DEVICES) as bench:
        chaos = Chaos(
            bench, logs, rate=opts.rate, subscription=opts.subscription, cameras=opts.cameras,
            camera_lease_s=opts.camera_lease_s,
        )  # fmt: skip
        try:
            chaos.run(opts.seconds, faults, rng)
            result = verdict(chaos)
        finally:
            chaos.stop()
    out = {
        "bench": "chaos",
        "seconds": opts.seconds,
        "seed": opts.seed,
        "rate": opts.rate,
        "subscription": opts.subscription,
        "faults": [r["fault"] for r in chaos.recovery],
        **result,
        "logs": str(logs),
    }
    (logs / "result.json").write_text(json.dumps(out, ensure_ascii=False, default=str))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m ioc.bench.chaos")
    ap.add_argument("--quick", action="store_true")
    add_arguments(ap)
    a = ap.parse_args()
    from ioc.config import get_settings

    print(json.dumps(main(get_settings(), a.quick, **given(a)), ensure_ascii=False), flush=True)
