"""LocalServices against the real binaries: PostgreSQL 15 + TimescaleDB and Mosquitto.

Every test uses its own state dir and free ports, so it runs next to a developer's `ioc dev`.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ioc.config import Settings
from ioc.services import LocalServices, ServiceError
from ioc.services.base import fallback_dir, port_free

pytestmark = pytest.mark.integration

SIM_PASSWORD = "sim-" + uuid.uuid4().hex[:8]
INGEST_PASSWORD = "ingest-" + uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "state_dir": state_dir,
        "pg_port": free_port(),
        "mqtt_port": free_port(),
        "pg_password": "pg-" + uuid.uuid4().hex[:8],
        "mqtt_ingest_password": INGEST_PASSWORD,
        "mqtt_sim_password": SIM_PASSWORD,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state dir every service user can reach (pytest's tmp_path is under a 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="ioc-svc-"))
    path.chmod(0o755)
    yield path / "state"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def running() -> Iterator[LocalServices]:
    root = Path(tempfile.mkdtemp(prefix="ioc-svc-"))
    root.chmod(0o755)
    svc = LocalServices(make_settings(root / "state"))
    try:
        svc.up()
        yield svc
    finally:
        svc.purge()
        shutil.rmtree(root, ignore_errors=True)


def mqtt_login(settings: Settings, user: str | None, password: str | None) -> Any:
    """Connect with MQTT v5 and return the CONNACK reason code."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5,
        client_id=f"test-{uuid.uuid4().hex[:8]}",
    )
    if user is not None:
        client.username_pw_set(user, password)
    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        result.setdefault("rc", reason_code)
        done.set()

    client.on_connect = on_connect
    client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
    client.loop_start()
    try:
        assert done.wait(5), "no CONNACK within 5 s"
    finally:
        client.disconnect()
        client.loop_stop()
    return result["rc"]


def test_up_starts_postgres_with_timescaledb(running: LocalServices) -> None:
    statuses = {s.name: s for s in running.status()}
    assert statuses["postgresql"].running and statuses["postgresql"].pid
    assert statuses["mosquitto"].running and statuses["mosquitto"].pid
    assert statuses["postgresql"].port == running.settings.pg_port
    assert statuses["mosquitto"].port == running.settings.mqtt_port
    with psycopg.connect(running.settings.dsn, connect_timeout=5) as conn:
        extensions = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
        assert "timescaledb" in extensions
        license_row = conn.execute("SHOW timescaledb.license").fetchone()
        assert license_row is not None and license_row[0] in ("apache", "timescale")
        encoding = conn.execute("SHOW server_encoding").fetchone()
        assert encoding is not None and encoding[0] == "UTF8"
    assert running.pg_log_path.exists()


def test_mosquitto_requires_a_valid_login(running: LocalServices) -> None:
    s = running.settings
    assert mqtt_login(s, s.mqtt_sim_user, SIM_PASSWORD) == 0
    assert mqtt_login(s, s.mqtt_ingest_user, INGEST_PASSWORD) == 0
    anonymous = mqtt_login(s, None, None)
    assert anonymous.is_failure and anonymous.value in (134, 135)
    wrong = mqtt_login(s, s.mqtt_sim_user, "wrong-password")
    assert wrong.is_failure and wrong.value in (134, 135)


def test_ingest_user_reads_shared_subscription(running: LocalServices) -> None:
    """The ACL lets the ingest user consume the traffic topics through a shared subscription."""
    s = running.settings
    got: list[bytes] = []
    granted: list[Any] = []
    received = threading.Event()
    subscribed = threading.Event()

    def client(user: str, password: str) -> mqtt.Client:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
        )
        c.username_pw_set(user, password)
        return c

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        c.subscribe(f"$share/{s.mqtt_share_group}/ioc/v1/traffic/+/observation", qos=1)

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        granted.extend(codes)
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        received.set()

    ingest = client(s.mqtt_ingest_user, INGEST_PASSWORD)
    ingest.on_connect = on_connect
    ingest.on_subscribe = on_subscribe
    ingest.on_message = on_message
    ingest.connect(s.mqtt_host, s.mqtt_port)
    ingest.loop_start()
    sim = client(s.mqtt_sim_user, SIM_PASSWORD)
    sim.connect(s.mqtt_host, s.mqtt_port)
    sim.loop_start()
    try:
        assert subscribed.wait(5) and not granted[0].is_failure
        topic = "ioc/v1/traffic/sensor-1/observation"
        sim.publish(topic, b'{"ok": true}', qos=1).wait_for_publish(5)
        assert received.wait(5) and got == [b'{"ok": true}']
    finally:
        for c in (ingest, sim):
            c.disconnect()
            c.loop_stop()


def test_up_twice_is_idempotent(running: LocalServices) -> None:
    before = [(s.name, s.pid) for s in running.status()]
    started = time.monotonic()
    after = [(s.name, s.pid) for s in running.up()]
    assert after == before
    assert time.monotonic() - started < 3
    # A second manager on the same state dir sees the same processes.
    assert [(s.name, s.pid) for s in LocalServices(running.settings).status()] == before


def test_foreign_pg_port_is_refused_before_anything_starts(state_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        svc = LocalServices(make_settings(state_dir, pg_port=taken))
        with pytest.raises(ServiceError, match="IOC_PG_PORT") as info:
            svc.up()
        assert str(taken) in str(info.value) and "\n" not in str(info.value)
        assert not any(s.running for s in svc.status())


def test_foreign_mqtt_port_leaves_nothing_half_started(state_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        svc = LocalServices(make_settings(state_dir, mqtt_port=squatter.getsockname()[1]))
        with pytest.raises(ServiceError, match="IOC_MQTT_PORT"):
            svc.up()
        assert not any(s.running for s in svc.status())


def test_down_stops_both_and_data_survives_restart(running: LocalServices) -> None:
    with psycopg.connect(running.settings.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS survives (x int)")
    running.down()
    statuses = running.status()
    assert [s.running for s in statuses] == [False, False]
    assert all(s.pid is None for s in statuses)
    assert port_free("127.0.0.1", running.settings.pg_port)
    assert port_free("127.0.0.1", running.settings.mqtt_port)
    running.down()  # idempotent
    running.up()
    with psycopg.connect(running.settings.dsn) as conn:
        assert conn.execute("SELECT to_regclass('survives')").fetchone() == ("survives",)


@pytest.mark.skipif(os.geteuid() != 0, reason="the /var/lib/ioc fallback is for root only")
def test_unreachable_state_dir_falls_back_to_var_lib(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    svc = LocalServices(make_settings(hidden / "state"))
    try:
        svc.up()
        assert svc.runtime_dir == fallback_dir(hidden / "state")
        assert (hidden / "state" / "RUNTIME_DIR").read_text().strip() == str(svc.runtime_dir)
        assert all(s.running for s in LocalServices(svc.settings).status())
    finally:
        runtime = svc.runtime_dir
        svc.purge()
    assert not runtime.exists()
