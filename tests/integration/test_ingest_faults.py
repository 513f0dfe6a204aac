"""The ingest worker under faults, as a real process: kill -9 mid-burst, broker and database
restarts mid-burst, two workers sharing the load. Each ends with exactly N rows."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt.worker import IngestWorker
from ioc.config import Settings
from ioc.domain import wire
from ioc.services import LocalServices
from tests.conftest import env_for
from tests.integration.test_ingest import make_source

pytestmark = pytest.mark.integration
DEVICES = [f"ts-{i:05d}" for i in range(1, 61)]


def burst(n: int, seq_base: int) -> list[tuple[str, bytes]]:
    base = datetime.now(UTC) - timedelta(minutes=30)
    out = []
    for i in range(n):
        dev = DEVICES[i % len(DEVICES)]
        o = wire.TrafficObservation(
            device_id=dev,
            seq=seq_base + i,
            observed_at=base + timedelta(milliseconds=i),
            intensity=3,
            average_speed=40.0,
            occupancy=0.1,
            interval_s=1,
        )
        out.append((wire.observation_topic(dev), o.to_payload()))
    return out


class Publisher(threading.Thread):
    """Publishes at a steady rate; survives broker restarts (paho resends unacknowledged)."""

    def __init__(self, settings: Settings, messages: list[tuple[str, bytes]], rate: float) -> None:
        super().__init__(daemon=True)
        self.messages, self.rate = messages, rate
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-burst-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        self.acked = 0

    def run(self) -> None:
        infos = []
        start = time.monotonic()
        for i, (topic, body) in enumerate(self.messages):
            infos.append(self.client.publish(topic, body, qos=1))
            ahead = i / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        deadline = time.monotonic() + 120
        for info in infos:
            # Not wait_for_publish(): a message published while the broker was down keeps
            # rc=NO_CONN although paho queued it and delivers it after reconnecting.
            while not info._published and time.monotonic() < deadline:  # noqa: SLF001
                time.sleep(0.02)
            self.acked += info._published  # noqa: SLF001
        self.client.disconnect()
        self.client.loop_stop()


def stored(settings: Settings, seq_base: int, n: int) -> int:
    with psycopg.connect(settings.dsn, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(*) FROM traffic_observations WHERE seq >= %s AND seq < %s",
            (seq_base, seq_base + n),
        ).fetchone()
        assert row is not None
        return int(row[0])


def wait_stored(settings: Settings, seq_base: int, n: int, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        try:
            got = stored(settings, seq_base, n)
        except psycopg.OperationalError:
            got = -1  # database restarting
        if got >= at_least:
            return got
        time.sleep(0.2)
    return got


@pytest.fixture
def worker_env(services: Settings, tmp_path: Path) -> dict[str, str]:
    """One worker with a plain persistent subscription (the default deployment)."""
    tag = uuid.uuid4().hex[:8]
    return env_for(services) | {
        "IOC_MQTT_CLIENT_ID": f"test-worker-{tag}",
        "IOC_MQTT_SHARE_GROUP": "",
        "IOC_INGEST_BATCH_SIZE": "200",
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "ingest", "mqtt"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        deadline = time.monotonic() + 20
        path = Path(log.name)
        while "mqtt connected" not in path.read_text(errors="replace"):
            assert proc.poll() is None, path.read_text(errors="replace")
            assert time.monotonic() < deadline, "worker did not connect"
            time.sleep(0.1)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def seq_base() -> int:
    return int(time.time() * 1000) * 10


def test_kill_9_mid_burst_loses_nothing(services: Settings, worker_env, spawn) -> None:  # type: ignore[no-untyped-def]
    n, base = 3000, seq_base()
    first = spawn(worker_env)
    pub = Publisher(services, burst(n, base), rate=1500)
    pub.start()
    assert wait_stored(services, base, n, at_least=300, timeout=30) >= 300
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    pub.join(60)
    assert pub.acked == n
    spawn(worker_env)  # same client id: resumes the session and gets what was not acknowledged
    assert wait_stored(services, base, n, at_least=n, timeout=60) == n
    time.sleep(1)
    assert stored(services, base, n) == n  # exactly: no duplicate rows


def test_broker_restart_mid_burst(services: Settings, worker_env, spawn) -> None:  # type: ignore[no-untyped-def]
    n, base = 3000, seq_base()
    worker = spawn(worker_env)
    pub = Publisher(services, burst(n, base), rate=1000)
    pub.start()
    assert wait_stored(services, base, n, at_least=500, timeout=30) >= 500
    broker = LocalServices(services).mosquitto
    broker.stop()
    time.sleep(1)
    broker.start()
    pub.join(90)
    assert pub.acked == n
    assert wait_stored(services, base, n, at_least=n, timeout=60) == n
    assert worker.poll() is None, "worker died with the broker"


def test_database_restart_mid_burst(services: Settings, worker_env, spawn) -> None:  # type: ignore[no-untyped-def]
    n, base = 3000, seq_base()
    worker = spawn(worker_env)
    pub = Publisher(services, burst(n, base), rate=1000)
    pub.start()
    assert wait_stored(services, base, n, at_least=500, timeout=30) >= 500
    db = LocalServices(services).postgres
    db.stop()
    time.sleep(3)  # the worker keeps receiving up to Receive Maximum, acknowledges nothing
    db.start()
    pub.join(90)
    assert pub.acked == n
    assert wait_stored(services, base, n, at_least=n, timeout=60) == n
    assert worker.poll() is None, "worker died with the database"


async def test_two_workers_share_the_load(services: Settings) -> None:
    from tests.integration.test_ingest import publish_all

    tag = uuid.uuid4().hex[:8]
    workers = []
    for i in range(2):
        source = make_source(services, f"test-share-{tag}-{i}", f"g-{tag}")
        w = IngestWorker(source=source, dsn=services.dsn, batch_size=100, batch_seconds=0.1)
        await source.start()
        workers.append((w, source, asyncio.create_task(w.run())))
    n, base = 2000, seq_base()
    try:
        await asyncio.to_thread(publish_all, services, burst(n, base))
        deadline = time.monotonic() + 30
        # Wait for our readings to be written (availability messages of sensors in other tests
        # may arrive on the same subscription, so "received" alone is not the signal).
        while sum(w.counters["stored"] + w.counters["duplicates"] for w, _, _ in workers) < n:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        shares = [w.counters["stored"] for w, _, _ in workers]
        assert all(s > n * 0.2 for s in shares), shares  # both did real work
        assert sum(w.counters["stored"] for w, _, _ in workers) == n
        assert sum(w.counters["duplicates"] for w, _, _ in workers) == 0
        assert await asyncio.to_thread(stored, services, base, n) == n
    finally:
        for w, source, task in workers:
            w.stop()
            await task
            await source.stop()


async def test_database_down_pauses_reading_with_bounded_memory(services: Settings) -> None:
    """While the database is down the worker acknowledges nothing and stops reading once
    ``max_outstanding`` messages are in hand; the broker keeps the rest. Then it catches up."""
    from ingest.mqtt.source import MqttSource
    from tests.integration.test_ingest import publish_all

    tag = uuid.uuid4().hex[:8]
    source = MqttSource(
        host=services.mqtt_host,
        port=services.mqtt_port,
        username=services.mqtt_ingest_user,
        password=services.mqtt_ingest_password,
        client_id=f"test-bp-{tag}",
        topic_filters=[wire.TRAFFIC_OBSERVATION_FILTER],
        receive_maximum=1000,
        max_outstanding=200,
    )
    worker = IngestWorker(source=source, dsn=services.dsn, batch_size=100, batch_seconds=0.1)
    await source.start()
    task = asyncio.create_task(worker.run())
    db = LocalServices(services).postgres
    n, base = 3000, seq_base()
    try:
        await asyncio.to_thread(db.stop)
        await asyncio.to_thread(publish_all, services, burst(n, base))
        peak = 0
        for _ in range(30):
            await asyncio.sleep(0.1)
            peak = max(peak, source.outstanding)
        assert source.paused_reads > 0, (peak, worker.counters)
        assert peak <= 200 + 60, peak  # bounded: max_outstanding plus one read's worth
        assert worker.counters["stored"] == 0
        await asyncio.to_thread(db.start)
        got = await asyncio.to_thread(wait_stored, services, base, n, n, 60)
        assert got == n
        assert worker.counters["db_retries"] > 0
    finally:
        if not db.running():
            await asyncio.to_thread(db.start)
        worker.stop()
        await task
        await source.stop()
