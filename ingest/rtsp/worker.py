"""The camera-health worker (``ioc ingest rtsp``): leases cameras, runs one capture thread per
camera, and writes what they see.

The asyncio loop never blocks: captures run in their own threads, and the loop only takes their
snapshots (a lock held for microseconds). Every ``lease_s / 3`` it renews its leases and starts or
stops captures to match; every tick it writes status changes (state + event, one transaction);
every ``health_interval_s`` a health row per camera; thumbnails and learned baselines when new.
If it cannot renew its leases for most of a lease period it stops its captures: by then another
worker may hold them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from ingest.rtsp import metrics as m
from ingest.rtsp.capture import CameraCapture, CaptureOptions, Snapshot
from ingest.rtsp.tracker import HealthTracker
from ioc.db import cameras as repo
from ioc.db.connect import DatabaseUnavailable, connect
from ioc.domain.camera import Reason, Thresholds
from ioc.logs import redact

log = structlog.get_logger("ingest.rtsp")
MAX_RESTARTS = 5  # capture-thread restarts per camera per minute


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str = field(default_factory=repo.default_worker_id)
    pool: str = "default"
    user: str | None = None
    password: str | None = None
    lease_s: float = 15.0
    health_interval_s: float = 5.0
    tick_s: float = 0.5
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Privacy (docs/privacy.md): camera id -> mask polygons; past thumbnails every N s or None.
    privacy_masks: Mapping[str, Sequence[Sequence[tuple[float, float]]]] = field(
        default_factory=dict
    )
    thumbnail_history_every_s: float | None = None


class CameraWorker:
    def __init__(self, *, dsn: str, config: WorkerConfig) -> None:
        self.dsn = dsn
        self.config = config
        self.captures: dict[str, CameraCapture] = {}
        self._stopping: list[CameraCapture] = []  # asked to stop, thread not yet ended
        self._written: dict[str, str] = {}  # status last written per camera
        self._stop = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lease_ok_at = 0.0
        self.db_ok_at: float | None = None  # monotonic time of the last database success
        self._restarts: dict[str, list[float]] = {}
        self.counters = {"lease_cycles": 0, "db_errors": 0, "events": 0, "health_rows": 0}

    def stop(self) -> None:
        self._stop.set()

    @property
    def held(self) -> list[str]:
        return sorted(self.captures)

    @property
    def lease_ok_at(self) -> float | None:
        """Monotonic time of the last lease renewal that succeeded (None: none yet)."""
        return self._lease_ok_at if self.counters["lease_cycles"] else None

    async def run(self) -> None:
        cfg = self.config
        next_lease = next_health = 0.0
        log.info("camera worker running", worker=cfg.worker_id, pool=cfg.pool)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_lease:
                    next_lease = now + cfg.lease_s / 3
                    await self._leases()
                if self.captures and now - self._lease_ok_at > cfg.lease_s * 0.8:
                    log.warning("cannot renew leases: stopping captures", worker=cfg.worker_id)
                    self._release(list(self.captures))
                due = now >= next_health
                if due:
                    next_health = now + cfg.health_interval_s
                self._watchdog()
                snaps = [c.snapshot() for c in self.captures.values()]
                self._gauges(snaps)
                await self._write(snaps, due)
                self._stopping = [c for c in self._stopping if c.alive]
                try:
                    await asyncio.wait_for(self._stop.wait(), cfg.tick_s)
                except TimeoutError:
                    pass
        finally:
            await self._shutdown()

    # ------------------------------------------------------------------- database ---
    async def _db(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.dsn, autocommit=True)
        return self._conn

    def _gauges(self, snaps: list[Snapshot]) -> None:
        m.LEASES_HELD.labels(self.config.pool).set(len(self.captures))
        m.CAPTURES.set(sum(c.alive for c in self.captures.values()))
        m.count_statuses([s.status for s in snaps])

    async def _db_failed(self, what: str, exc: BaseException) -> None:
        self.counters["db_errors"] += 1
        m.DB_ERRORS.labels("lease" if what == "lease cycle" else "write").inc()
        log.warning("database error", during=what, error=redact(str(exc))[:200])
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _leases(self) -> None:
        cfg = self.config
        try:
            conn = await self._db()
            cycle = await repo.lease_cycle_detail(
                conn, worker_id=cfg.worker_id, pool=cfg.pool, ttl_s=cfg.lease_s
            )
            mine = cycle.mine
            new = [d for d in mine if d not in self.captures]
            configs = await repo.load_cameras(conn, new) if new else []
        except (psycopg.Error, DatabaseUnavailable, OSError) as exc:
            await self._db_failed("lease cycle", exc)
            return
        self._lease_ok_at = self.db_ok_at = time.monotonic()
        self.counters["lease_cycles"] += 1
        m.LEASE_CYCLES.labels(cfg.pool).inc()
        m.LEASES_UNOWNED.labels(cfg.pool).set(cycle.unowned)
        if cycle.taken_over:
            m.TAKEOVERS.labels(cfg.pool).inc(len(cycle.taken_over))
            log.info("took over cameras of an expired lease", devices=cycle.taken_over)
        self._release([d for d in self.captures if d not in mine])
        for cam in configs:
            self._start(cam)

    def _start(self, cam: repo.CameraConfig) -> None:
        if not cam.url:
            log.warning("camera has no rtsp_url in its metadata", device=cam.device_id)
            return
        tracker = HealthTracker(
            now=time.monotonic(),
            thresholds=self.config.thresholds,
            expected_fps=cam.expected_fps,
            baseline=cam.baseline,
        )
        self.captures[cam.device_id] = CameraCapture(
            cam.device_id,
            cam.url,
            user=self.config.user,
            password=self.config.password,
            tracker=tracker,
            options=self.config.capture,
            privacy=self.config.privacy_masks.get(cam.device_id, ()),
        ).start()
        self._written.pop(cam.device_id, None)
        log.info("watching camera", device=cam.device_id, url=redact(cam.url),
                 privacy_masks=len(self.config.privacy_masks.get(cam.device_id, ())))  # fmt: skip

    def _watchdog(self) -> None:
        """A capture thread catches everything it can; should one die anyway, start it again,
        at most ``MAX_RESTARTS`` a minute (then the camera shows offline: capture_error)."""
        now = time.monotonic()
        for d, cap in list(self.captures.items()):
            if cap.alive:
                continue
            recent = [t for t in self._restarts.get(d, []) if now - t < 60]
            if len(recent) >= MAX_RESTARTS:
                if len(recent) == MAX_RESTARTS:
                    log.error("capture keeps dying; not restarting it", device=d)
                    recent.append(now)
                    cap.tracker.on_failure(now, Reason("capture_error", "capture crashed", 1.0))
                self._restarts[d] = recent
                continue
            self._restarts[d] = [*recent, now]
            m.RESTARTS.inc()
            log.warning("capture thread died; restarting", device=d)
            self.captures[d] = cap.restarted()

    def _release(self, device_ids: list[str]) -> None:
        for d in device_ids:
            cap = self.captures.pop(d)
            cap.stop()
            self._stopping.append(cap)
            log.info("released camera", device=d)

    async def _write(self, snaps: list[Snapshot], health_rows: bool) -> None:
        at = datetime.now(UTC)
        states = [
            repo.CameraState(s.device_id, s.status, s.reasons, s.metrics, s.last_frame, at)
            for s in snaps
            if s.status != "unknown"
            and (health_rows or s.transitions or self._written.get(s.device_id) != s.status)
        ]
        thumbs = [s for s in snaps if s.thumbnail is not None]
        learned = [s for s in snaps if s.baseline is not None]
        if not (states or thumbs or learned):
            return
        try:
            conn = await self._db()
            ids = await repo.record(
                conn, worker_id=self.config.worker_id, states=states, health_rows=health_rows
            )
            for s in thumbs:
                assert s.thumbnail is not None
                jpeg, taken, w, h = s.thumbnail
                await repo.upsert_thumbnail(
                    conn, s.device_id, jpeg, taken, w, h,
                    history_every_s=self.config.thumbnail_history_every_s,
                )  # fmt: skip
            for s in learned:
                assert s.baseline is not None
                await repo.save_baseline(conn, s.device_id, s.baseline)
                log.info("learned camera baseline", device=s.device_id)
        except (psycopg.Error, DatabaseUnavailable, OSError) as exc:
            await self._db_failed("write", exc)
            return
        self.db_ok_at = time.monotonic()
        self.counters["events"] += len(ids)
        self.counters["health_rows"] += len(states) if health_rows else 0
        for st in states:
            if self._written.get(st.device_id) != st.status:
                log.info("camera status", device=st.device_id, status=st.status,
                         reasons=[r["code"] for r in st.reasons])  # fmt: skip
            self._written[st.device_id] = st.status

    async def _shutdown(self) -> None:
        self._release(list(self.captures))
        stopping, self._stopping = self._stopping, []
        deadline = time.monotonic() + self.config.capture.open_timeout_s + 3

        def join_all() -> None:
            for cap in stopping:
                cap.join(max(0.1, deadline - time.monotonic()))

        await asyncio.to_thread(join_all)
        try:
            await repo.retire_worker(await self._db(), self.config.worker_id)
        except (psycopg.Error, DatabaseUnavailable, OSError) as exc:
            log.warning("could not give back leases", error=redact(str(exc))[:200])
        if self._conn is not None:
            await self._conn.close()
        self._gauges([])
        log.info("camera worker stopped", worker=self.config.worker_id, **self.counters)
