"""The long-running roles behind ``ioc <role>``: each builds its parts, runs until SIGTERM or
Ctrl-C, and stops them in reverse order."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import structlog

from ingest.mqtt.source import MqttSource
from ingest.mqtt.worker import IngestWorker
from ioc.alerts.engine import AlertEngine, load_rules
from ioc.config import Settings
from ioc.db.connect import require_schema
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import make_fleet
from ioc.observe import serving
from simulators import traffic

log = structlog.get_logger("ioc.roles")
# Readiness: how old a role's last success may be (seconds; see each role below).
READY_INGEST_DB_S = 15.0
READY_ALERTS_MIN_S = 30.0
READY_ROLLUPS_MIN_S = 120.0


def _on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


async def ingest_mqtt(settings: Settings) -> None:
    require_schema(settings.sqlalchemy_url)
    source = MqttSource(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username=settings.mqtt_ingest_user,
        password=settings.mqtt_ingest_password,
        client_id=settings.mqtt_client_id,
        topic_filters=[
            wire.shared_subscription(settings.mqtt_share_group, f)
            if settings.mqtt_share_group
            else f
            for f in (wire.TRAFFIC_OBSERVATION_FILTER, wire.TRAFFIC_AVAILABILITY_FILTER)
        ],
        receive_maximum=max(1, settings.ingest_queue_max // 2),
    )
    worker = IngestWorker(
        source=source,
        dsn=settings.dsn,
        batch_size=settings.ingest_batch_size,
        batch_seconds=settings.ingest_batch_seconds,
    )
    _on_signals(asyncio.get_running_loop(), worker.stop)
    port = settings.ingest_metrics_port
    async with serving("ingest-mqtt", port, settings.api_host, "IOC_INGEST_METRICS_PORT") as obs:
        # Ready: connected to the broker, and the database answered lately (a write, or the
        # worker's idle ping every few seconds).
        obs.condition("broker", source.connected.is_set)
        obs.recent("database", lambda: worker.db_ok_at, READY_INGEST_DB_S)
        await source.start()
        log.info("ingest worker running", client_id=settings.mqtt_client_id)
        try:
            await worker.run()
        finally:
            await source.stop()
            log.info("ingest worker stopped", **worker.counters)


async def alerts(settings: Settings) -> None:
    require_schema(settings.sqlalchemy_url)
    rules = load_rules(settings.rules_file)
    await _audit_rules(settings, [r.id for r in rules])
    engine = AlertEngine(dsn=settings.dsn, rules=rules, interval_s=settings.alerts_interval_seconds)
    _on_signals(asyncio.get_running_loop(), engine.stop)
    port = settings.alerts_metrics_port
    async with serving("alerts", port, settings.api_host, "IOC_ALERTS_METRICS_PORT") as obs:
        # Ready: an evaluation cycle (which reads and writes the database) ended lately.
        ready_s = max(READY_ALERTS_MIN_S, 10 * settings.alerts_interval_seconds)
        obs.recent("evaluation", lambda: engine.last_cycle_at, ready_s)
        log.info("alert engine running", rules=[r.id for r in rules])
        await engine.run()
    log.info("alert engine stopped", transitions=engine.transitions)


async def _audit_rules(settings: Settings, rule_ids: list[str]) -> None:
    """A changed rules file is a change of what raises alerts: it goes into the audit log."""
    from ioc.db.connect import connect
    from ioc.security.users import note_rules

    conn = await connect(settings.dsn, autocommit=True)
    try:
        text = settings.rules_file.read_text(encoding="utf-8")
        if await note_rules(conn, str(settings.rules_file), text, rule_ids):
            log.info(
                "alert rules changed since the last start: audited", file=str(settings.rules_file)
            )
    finally:
        await conn.close()


async def rollups(settings: Settings, *, once: bool = False) -> None:
    """Rollup maintenance and retention (ioc/rollups); ``once``: catch up, then exit."""
    from ioc.rollups.config import RollupSettings
    from ioc.rollups.worker import RollupWorker

    require_schema(settings.sqlalchemy_url)
    worker = RollupWorker(dsn=settings.dsn, settings=RollupSettings())
    if once:
        result, dropped = await worker.once()
        print(
            f"rolled up {result.readings} readings, {result.slots} availability slots;"
            f" dropped {sum(len(c) for c in dropped.values())} expired chunks"
        )
        return
    _on_signals(asyncio.get_running_loop(), worker.stop)
    port = settings.rollups_metrics_port
    async with serving("rollups", port, settings.api_host, "IOC_ROLLUPS_METRICS_PORT") as obs:
        # Ready: a rollup tick (database work) ended lately.
        ready_s = max(READY_ROLLUPS_MIN_S, 4 * worker.settings.interval_seconds)
        obs.recent("tick", lambda: worker.last_tick_at, ready_s)
        await worker.run()
    log.info("rollups stopped", ticks=worker.ticks, readings=worker.readings)


def api(settings: Settings) -> None:
    import uvicorn

    require_schema(settings.sqlalchemy_url)
    uvicorn.run(
        "ioc.api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        ws_max_queue=32,
        ws_per_message_deflate=settings.ws_compression,
        access_log=False,  # ioc.api.instrument logs each request, with its request id
    )


def simulate_traffic(
    settings: Settings,
    *,
    sensors: int | None = None,
    interval_s: float | None = None,
    seed: int | None = None,
    fault_rate: float = 0.0,
    fault_kinds: list[str] | None = None,
    congestion_per_hour: float = 0.0,
    processes: int = 1,
) -> None:
    from simulators.mqtt_pool import LinkConfig
    from simulators.traffic_engine import EngineConfig
    from simulators.traffic_faults import FaultKind

    geo = load_geography(settings.areas_file)
    # Placement always follows IOC_SIM_SEED, as `ioc seed` does, so areas and neighbours match
    # the registered devices; --seed only changes the readings, jams and faults.
    fleet = make_fleet(geo, sensors or settings.sim_sensors, settings.sim_seed)
    engine = EngineConfig(
        seed=settings.sim_seed if seed is None else seed,
        interval_s=interval_s or settings.sim_interval_seconds,
        fault_rate=fault_rate,
        fault_kinds=tuple(FaultKind(k) for k in fault_kinds) if fault_kinds else tuple(FaultKind),
        congestion_per_hour=congestion_per_hour,
        timezone=geo.timezone,
    )
    options = traffic.SimOptions(
        engine=engine,
        processes=processes,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )
    link = LinkConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username=settings.mqtt_sim_user,  # the control listener; each sensor logs in as itself
        password=settings.mqtt_sim_password,
        device_secret=settings.mqtt_device_secret,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "traffic simulator running",
        sensors=len(fleet),
        interval_s=engine.interval_s,
        fault_rate=fault_rate,
        congestion_per_hour=congestion_per_hour,
        processes=processes,
    )
    traffic.run(fleet, options, link, stop)


# ------------------------------------------------------------------------------ cameras ---


def simulate_cameras(
    settings: Settings,
    *,
    cameras: int | None = None,
    fps: int | None = None,
    size: str | None = None,
    day_seconds: float | None = None,
) -> None:
    """Render the scenes, then become the GStreamer RTSP server (exec: one process to stop)."""

    from ingest.rtsp.config import camera_settings
    from simulators.cameras.control import SimulatorConfig, prepare

    cs = camera_settings(settings, logs_in=True)
    width, height = (
        (int(v) for v in size.lower().split("x")) if size else (cs.sim_width, cs.sim_height)
    )
    cfg = SimulatorConfig(
        port=settings.rtsp_port,
        control_port=cs.control_port,
        cameras=cameras or cs.sim_cameras,
        width=width,
        height=height,
        fps=fps or cs.sim_fps,
        user=cs.rtsp_user,
        password=cs.rtsp_password,
        day_seconds=day_seconds or cs.sim_day_seconds,
        seed=settings.sim_seed,
    )
    argv, env = prepare(cfg, settings.state_dir)
    log.info(
        "camera simulator starting", cameras=cfg.cameras, size=f"{width}x{height}", fps=cfg.fps
    )
    os.execve(argv[0], argv, env)


async def ingest_rtsp(settings: Settings) -> None:
    from ingest.rtsp.capture import CaptureOptions
    from ingest.rtsp.config import camera_settings
    from ingest.rtsp.worker import CameraWorker, WorkerConfig
    from ioc.db.cameras import default_worker_id
    from ioc.privacy.masks import load_masks

    cs = camera_settings(settings, logs_in=True)
    masks = load_masks(cs.privacy_masks_file)  # a bad file stops us here: docs/privacy.md
    log.info("privacy masks", file=str(cs.privacy_masks_file), cameras=len(masks.cameras),
             thumbnail_history_hours=cs.thumbnail_history_hours)  # fmt: skip
    require_schema(settings.sqlalchemy_url)
    worker = CameraWorker(
        dsn=settings.dsn,
        config=WorkerConfig(
            worker_id=cs.worker_id or default_worker_id(),
            pool=cs.pool,
            user=cs.rtsp_user,
            password=cs.rtsp_password,
            lease_s=cs.lease_s,
            health_interval_s=cs.health_s,
            capture=CaptureOptions(thumbnail_interval_s=cs.thumbnail_s),
            privacy_masks=masks.cameras,
            thumbnail_history_every_s=cs.history_every_s,
        ),
    )
    _on_signals(asyncio.get_running_loop(), worker.stop)
    port = settings.rtsp_metrics_port
    async with serving("ingest-rtsp", port, settings.api_host, "IOC_RTSP_METRICS_PORT") as obs:
        # Ready: leases renewed in time (after that the worker drops its cameras) and the
        # database answered within a lease period.
        obs.recent("leases", lambda: worker.lease_ok_at, cs.lease_s * 0.8)
        obs.recent("database", lambda: worker.db_ok_at, cs.lease_s)
        await worker.run()


def camera_fault(settings: Settings, *, camera: int | None, fault: str | None, clear: bool) -> None:
    """Switch a fault of the running camera simulator (``ioc simulate camera-fault``)."""
    from ingest.rtsp.config import camera_settings
    from simulators.cameras.control import SimulatorControl

    if not clear and (camera is None or fault is None):
        raise SystemExit("ioc: error: give --camera N and --fault NAME (or --clear)")
    ctl = SimulatorControl(camera_settings(settings).control_port)
    try:
        if clear:
            ctl.clear(camera)
            print(f"cleared faults of {'every camera' if camera is None else f'camera {camera}'}")
            return
        assert camera is not None and fault is not None
        state = ctl.set_fault(camera, fault, True)
    except OSError:
        raise ConnectionRefusedError(
            f"no camera simulator answers at {ctl.base}: start it with `ioc simulate cameras`"
            " (or set IOC_RTSP_CONTROL_PORT)"
        ) from None
    print(f"camera {camera} ({state['path']}): faults now {', '.join(state['faults']) or 'none'}")


def bench(
    settings: Settings, name: str, *, quick: bool, options: dict[str, Any] | None = None
) -> None:
    """Run ``ioc/bench/<name>.py:main``; its result is the last line, one JSON object.
    ``options``: a bench's own flags (only ``chaos`` has any), passed as keyword arguments."""
    import importlib
    import json

    from ioc.bench import BENCHES

    module = importlib.import_module(BENCHES[name])
    result = module.main(settings, quick, **(options or {}))
    print(json.dumps(result, ensure_ascii=False), flush=True)
