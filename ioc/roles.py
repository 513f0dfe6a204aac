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
        topic_filter=wire.shared_subscription(
            settings.mqtt_share_group, wire.TRAFFIC_OBSERVATION_FILTER
        ),
        receive_maximum=max(1, settings.ingest_queue_max // 2),
    )
    worker = IngestWorker(
        source=source,
        dsn=settings.dsn,
        batch_size=settings.ingest_batch_size,
        batch_seconds=settings.ingest_batch_seconds,
    )
    _on_signals(asyncio.get_running_loop(), worker.stop)
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


def simulate_traffic(settings: Settings, *, sensors: int | None = None) -> None:
    geo = load_geography(settings.areas_file)
    fleet = make_fleet(geo, sensors or settings.sim_sensors, settings.sim_seed)
    sim = traffic.TrafficSimulator(
        fleet, seed=settings.sim_seed, interval_s=settings.sim_interval_seconds
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("traffic simulator running", sensors=len(fleet), interval_s=sim.interval_s)
    traffic.run(
        sim,
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        username=settings.mqtt_sim_user,
        password=settings.mqtt_sim_password,
        stop=stop,
    )
