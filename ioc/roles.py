"""The long-running roles behind ``ioc <role>``: each builds its parts, runs until SIGTERM or
Ctrl-C, and stops them in reverse order."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

import structlog

from ingest.mqtt.source import MqttSource
from ingest.mqtt.worker import IngestWorker
from ioc.alerts.engine import AlertEngine, load_rules
from ioc.config import Settings
from ioc.db.connect import require_schema
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import make_fleet
from simulators import traffic

log = structlog.get_logger("ioc.roles")


def serve_metrics(port: int, host: str, env_var: str) -> None:
    """Prometheus /metrics on its own port (a daemon thread of the client library)."""
    from prometheus_client import start_http_server

    from ioc.services import ServiceError

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise ServiceError(
            f"cannot serve metrics on port {port} ({exc.strerror}); set {env_var} to a free port"
            " or 0 to turn metrics off"
        ) from None
    log.info("metrics", url=f"http://{host}:{port}/metrics")


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
    if settings.ingest_metrics_port:
        serve_metrics(settings.ingest_metrics_port, settings.api_host, "IOC_INGEST_METRICS_PORT")
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
    engine = AlertEngine(dsn=settings.dsn, rules=rules, interval_s=settings.alerts_interval_seconds)
    _on_signals(asyncio.get_running_loop(), engine.stop)
    log.info("alert engine running", rules=[r.id for r in rules])
    await engine.run()
    log.info("alert engine stopped", transitions=engine.transitions)


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
        username=settings.mqtt_sim_user,
        password=settings.mqtt_sim_password,
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
    import os

    from ingest.rtsp.config import camera_settings
    from simulators.cameras.control import SimulatorConfig, prepare

    cs = camera_settings(settings)
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

    require_schema(settings.sqlalchemy_url)
    cs = camera_settings(settings)
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
        ),
    )
    _on_signals(asyncio.get_running_loop(), worker.stop)
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


def bench(settings: Settings, name: str, *, quick: bool) -> None:
    """Run ``ioc/bench/<name>.py:main``; its result is the last line, one JSON object."""
    import importlib
    import json

    from ioc.bench import BENCHES

    module = importlib.import_module(BENCHES[name])
    result = module.main(settings, quick)
    print(json.dumps(result, ensure_ascii=False), flush=True)
