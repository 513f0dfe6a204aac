"""The cameras of ``ioc bench chaos``: the RTSP camera simulator (``ioc simulate cameras``), two
camera workers (``ioc ingest rtsp``) that share the cameras through leases in the database, and
the two camera faults (docs/reliability.md, "Cameras"):

- ``kill_camera_worker``: kill -9 a worker that holds cameras; the survivor must take them when
  their leases expire (``takeover_s``); then the killed worker is restarted under its id and the
  cameras are shared again. It is restarted only after the takeover: restarted at once under the
  same id, it would simply renew its own leases and nothing would be taken over.
- ``hang_camera``: the simulator's ``hang`` fault on one camera (the server keeps the connection
  and sends no video) until the worker reports it offline and the camera rule's alert fires;
  then the fault is cleared and the camera must come back ok and the alert resolve.

Recovery (for every fault of the run, cameras on): every camera leased by one running worker,
no worker above its fair share, and a health row newer than both the fault and the lease.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from ioc.bench.chaos_proc import Proc
from ioc.bench.common import free_port
from ioc.config import Settings

SIZE, FPS = "320x180", 5  # small: the whole run shares two cores
HEALTH_S = 1.0  # a health row per camera a second
FRESH_S = 5.0  # at the end, every camera's newest health row is at most this old
HANG_TIMEOUT_S = 30.0  # to detect the hang, and again for its alert to fire
PASSWORD = "chaos-bench-cameras"  # the simulated cameras' login (never a real one)
PREFIX = "chaos-cam-"
RULE_ID = "chaos.camera"
RULE = f"""  - id: {RULE_ID}
    title: "Camera hỏng (chaos)"
    title_en: "Camera unhealthy (chaos)"
    device_kind: camera
    metric: camera_problem
    op: above
    threshold: 0.5
    clear: 0.5
    for_s: 2
    severity: major
"""


@dataclass(frozen=True)
class CameraRow:
    device_id: str
    holder: str | None  # the live lease's holder (None: free or expired)
    worker_live: bool  # the holder's heartbeat row is live
    acquired_at: datetime | None
    status: str | None  # device_state.last.status
    newest: datetime | None  # newest health row after ``since``


class Cameras:
    """Owns the simulator and the two workers; seeds the cameras; injects the camera faults."""

    def __init__(
        self, bench: Settings, logs: Path, *, count: int, lease_s: float, env: dict[str, str]
    ) -> None:
        from simulators.cameras.control import SimulatorControl

        self.count, self.lease_s = count, lease_s
        self.settings = bench.model_copy(update={"rtsp_port": free_port()})
        self.dsn = bench.dsn
        control_port = free_port()
        self.control = SimulatorControl(control_port, timeout=5.0)
        env = env | {
            "IOC_RTSP_CONTROL_PORT": str(control_port),
            "IOC_RTSP_PASSWORD": PASSWORD,
            "IOC_CAMERA_LEASE_SECONDS": str(lease_s),
            "IOC_CAMERA_HEALTH_SECONDS": str(HEALTH_S),
        }
        sim_args = ["simulate", "cameras", "--cameras", str(count), "--fps", str(FPS),
                    "--size", SIZE]  # fmt: skip
        self.simulator = Proc(self.settings, "camera-sim", sim_args, logs, "", **env)
        self.simulator.probe = self._sim_ready
        self.workers = [
            Proc(
                self.settings,
                f"camera{k}",
                ["ingest", "rtsp"],
                logs,
                "camera worker running",
                IOC_CAMERA_WORKER_ID=f"chaos-camera-{k}",
                **env,
            )  # fmt: skip
            for k in range(2)
        ]
        self.ids: list[str] = []
        self.steady_at: datetime | None = None  # every camera watched, before the first fault
        self.takeovers: list[dict[str, Any]] = []
        self.hangs: list[dict[str, Any]] = []

    @staticmethod
    def worker_id(p: Proc) -> str:
        return p.env["IOC_CAMERA_WORKER_ID"]

    def _sim_ready(self) -> bool:
        try:
            self.control.wait_ready(0)
        except TimeoutError:
            return False
        return True

    def seed(self) -> None:
        """Register the cameras (``chaos-cam-0001``.., paths ``/cam1``..) at the simulator."""
        from ioc.db import cameras as repo
        from ioc.db.connect import connect
        from ioc.db.seed import load_geography

        async def go() -> list[str]:
            conn = await connect(self.dsn)
            try:
                async with conn.transaction():
                    return await repo.seed_cameras(
                        conn, load_geography(self.settings.areas_file), self.count,
                        self.settings.sim_seed, f"rtsp://127.0.0.1:{self.settings.rtsp_port}",
                        id_prefix=PREFIX,
                    )  # fmt: skip
            finally:
                await conn.close()

        self.ids = asyncio.run(go())

    # ------------------------------------------------------------------------- reads ---

    def rows(self, since: datetime) -> list[CameraRow] | None:
        """Each camera's lease, status and newest health row after ``since``; None while the
        database does not answer."""
        sql = """
            SELECT l.device_id,
                   CASE WHEN l.expires_at > now() THEN l.holder END AS holder,
                   coalesce(w.expires_at > now(), false) AS worker_live,
                   l.acquired_at, s.last->>'status' AS status,
                   (SELECT max(h.time) FROM camera_health h
                     WHERE h.device_id = l.device_id AND h.time > %(since)s) AS newest
            FROM camera_leases l
            LEFT JOIN camera_workers w ON w.worker_id = l.holder
            LEFT JOIN device_state s ON s.device_id = l.device_id
            WHERE l.device_id = ANY(%(ids)s) ORDER BY l.device_id"""
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                found = conn.execute(sql, {"since": since, "ids": self.ids}).fetchall()
        except psycopg.Error:
            return None
        return [CameraRow(*r) for r in found]

    def settled(self, since: datetime) -> bool:
        """Every camera leased by a running worker (no worker above its fair share) and
        watched: a health row newer than ``since`` and than its lease."""
        rows = self.rows(since)
        running = {self.worker_id(p) for p in self.workers if p.running}
        if not rows or len(rows) != self.count or not running:
            return False
        share = math.ceil(self.count / len(running))
        per = Counter(r.holder for r in rows)
        return max(per.values()) <= share and all(
            r.holder in running
            and r.worker_live
            and r.newest is not None
            and (r.acquired_at is None or r.newest > r.acquired_at)
            for r in rows
        )

    def wait_settled(self, timeout: float) -> None:
        """Until :meth:`settled` (or ``timeout``); from then on (``steady_at``) a status change
        of a camera that is not hung is a false alarm."""
        since = datetime.now(UTC)
        deadline = time.monotonic() + timeout
        while not self.settled(since) and time.monotonic() < deadline:
            time.sleep(0.25)
        self.steady_at = datetime.now(UTC)

    def _scalar(self, sql: str, params: tuple[Any, ...]) -> Any:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute(sql, params).fetchone()
        except psycopg.Error:
            return None
        return row[0] if row else None

    def status(self, device: str) -> str | None:
        return self._scalar(  # type: ignore[no-any-return]
            "SELECT last->>'status' FROM device_state WHERE device_id = %s", (device,)
        )

    def open_alert(self, device: str) -> bool:
        n = self._scalar(
            "SELECT count(*) FROM alerts WHERE rule_id = %s AND device_id = %s "
            "AND status <> 'resolved'",
            (RULE_ID, device),
        )
        return n is None or n > 0

    # ------------------------------------------------------------------------ faults ---

    def kill_worker(self, rng: random.Random) -> tuple[str, Proc]:
        """kill -9 a worker holding cameras; wait for the survivor to hold them all (at most
        three lease periods); restart the killed one. Returns its label and the process."""
        victim = rng.choice(self.workers)
        rows = self.rows(datetime.now(UTC)) or []
        if not any(r.holder == self.worker_id(victim) for r in rows):
            victim = next(p for p in self.workers if p is not victim)  # it held none: the other
        survivor = next(p for p in self.workers if p is not victim)
        victim.kill9()
        killed = time.monotonic()
        took: float | None = None
        while time.monotonic() - killed < 3 * self.lease_s:
            rows = self.rows(datetime.now(UTC)) or []
            if rows and all(r.holder == self.worker_id(survivor) for r in rows):
                took = round(time.monotonic() - killed, 2)
                break
            time.sleep(0.2)
        self.takeovers.append({"killed": victim.name, "takeover_s": took})
        victim.start()
        return f"kill_camera_worker:{victim.name}", victim

    def hang(self, rng: random.Random) -> dict[str, Any]:
        """Hang one camera until it is reported offline and its alert fires (each within
        ``HANG_TIMEOUT_S``), then clear the fault. Returns the hang's record."""
        n = rng.randrange(1, self.count + 1)
        device = self.ids[n - 1]
        started, at = time.monotonic(), datetime.now(UTC)
        self.control.set_fault(n, "hang", True)
        detected = fired = None
        reasons: list[dict[str, Any]] = []
        while time.monotonic() - started < HANG_TIMEOUT_S and detected is None:
            if self.status(device) == "offline":
                detected = round(time.monotonic() - started, 2)
                reasons = self._scalar(
                    "SELECT last->'reasons' FROM device_state WHERE device_id = %s", (device,)
                ) or []  # fmt: skip
            time.sleep(0.2)
        t_fire = time.monotonic()
        while detected is not None and time.monotonic() - t_fire < HANG_TIMEOUT_S:
            if self._scalar(
                "SELECT count(*) FROM alerts WHERE rule_id = %s AND device_id = %s "
                "AND fired_at IS NOT NULL AND started_at >= %s",
                (RULE_ID, device, at),
            ):
                fired = round(time.monotonic() - started, 2)
                break
            time.sleep(0.2)
        self.control.clear(n)
        record = {
            "camera": device,
            "started_at": at,
            "cleared_at": datetime.now(UTC),
            "detected_s": detected,
            "reasons": [r.get("code") for r in reasons if isinstance(r, dict)],
            "alert_fired_s": fired,
            "held_s": round(time.monotonic() - started, 2),
        }
        self.hangs.append(record)
        return record

    def hang_recovered(self, record: dict[str, Any]) -> bool:
        """The hung camera is ok again (a health row after the clear) and its alert resolved."""
        device = record["camera"]
        fresh = self._scalar(
            "SELECT count(*) FROM camera_health WHERE device_id = %s AND time > %s "
            "AND status = 'ok'",
            (device, record["cleared_at"]),
        )
        return bool(fresh) and self.status(device) == "ok" and not self.open_alert(device)
