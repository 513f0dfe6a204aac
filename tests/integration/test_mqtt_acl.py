"""Per-device broker logins and the generated ACL, against the real Mosquitto and TimescaleDB.

The logins come from the real `ioc mqtt sync-logins` (registered devices of the session's
database, passwords derived from IOC_MQTT_DEVICE_SECRET). Whether the broker refused a
publication is observed, not assumed: a "fence" message published afterwards by a login that may
write must arrive, and the refused message must not have arrived before it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.mqtt.source import MqttSource
from ingest.mqtt.worker import IngestWorker
from ioc import mqtt_logins
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.domain import wire
from ioc.services import LocalServices
from ioc.services.base import RunAs, port_accepts
from tests.conftest import env_for, free_port

pytestmark = pytest.mark.integration
NOT_AUTHORIZED = 0x87  # MQTT v5 reason code (CONNACK, PUBACK)
BAD_LOGIN = 0x86  # MQTT v5 "bad user name or password"


class Client:
    """A paho client on its own thread that records its CONNACK, PUBACKs and messages."""

    def __init__(
        self,
        settings: Settings,
        user: str | None,
        password: str | None,
        *,
        v5: bool = True,
        ca: Path | None = None,
        expect_connack: bool = True,
    ):
        self.connack = threading.Event()
        self.rc: Any = None
        self.pubacks: dict[int, Any] = {}
        self.messages: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"acl-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        if ca is not None:
            c.tls_set(ca_certs=str(ca))
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = self._on_connect
        c.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        # Retained messages handed over on subscribing are left over from other tests on the
        # shared broker (e.g. a simulated sensor's Last Will): only live deliveries count.
        c.on_message = lambda _c, _u, m: (
            None if m.retain else self.messages.append((m.topic, bytes(m.payload)))
        )
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
        c.loop_start()
        self.client = c
        got = self.connack.wait(5 if expect_connack else 2)
        assert got or not expect_connack, "no CONNACK within 5 s"

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.rc = rc
        self.connack.set()

    @property
    def refused(self) -> bool:
        return bool(self.rc.is_failure)

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> Any:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def synced(services: Settings) -> Settings:
    """Every registered device gets its login, by the command an operator runs."""
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "mqtt", "sync-logins"],
        env=env_for(services),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # At least the session's 60 sensors: other tests may have registered more in this database.
    got = re.search(r"local broker logins: (\d+) devices", done.stdout)
    assert got is not None and int(got.group(1)) >= 60, done.stdout
    return services


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def device(settings: Settings, device_id: str, made: list[Client], *, v5: bool = True) -> Client:
    password = mqtt_logins.device_password(settings.mqtt_device_secret, device_id)
    c = Client(settings, device_id, password, v5=v5)
    made.append(c)
    assert not c.refused, f"{device_id} was refused: {c.rc}"
    return c


def fence(settings: Settings, watcher: Client, topic: str, made: list[Client]) -> None:
    """Publish a marker on ``topic`` as the simulator login and wait until ``watcher`` has it:
    whatever the broker delivers on that topic before it has arrived by then."""
    marker = f"fence-{uuid.uuid4().hex}".encode()
    sim = Client(settings, settings.mqtt_sim_user, settings.mqtt_sim_password)
    made.append(sim)
    assert sim.publish(topic, marker).value == 0
    deadline = time.monotonic() + 5
    while (topic, marker) not in watcher.messages:
        assert time.monotonic() < deadline, "the fence message never arrived"
        time.sleep(0.02)


def reading(device_id: str, seq: int) -> bytes:
    return wire.TrafficObservation(
        device_id=device_id,
        seq=seq,
        observed_at=datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5),
        intensity=7,
        average_speed=42.0,
        occupancy=0.2,
        interval_s=60,
    ).to_payload()


@pytest.fixture
async def worker(synced: Settings) -> AsyncIterator[IngestWorker]:
    tag = uuid.uuid4().hex[:8]
    source = MqttSource(
        host=synced.mqtt_host,
        port=synced.mqtt_port,
        username=synced.mqtt_ingest_user,
        password=synced.mqtt_ingest_password,
        client_id=f"test-acl-{tag}",
        topic_filters=[
            wire.shared_subscription(f"acl-{tag}", f)
            for f in (wire.TRAFFIC_OBSERVATION_FILTER, wire.TRAFFIC_AVAILABILITY_FILTER)
        ],
        receive_maximum=100,
    )
    w = IngestWorker(source=source, dsn=synced.dsn, batch_size=50, batch_seconds=0.2)
    await source.start()
    task = asyncio.create_task(w.run())
    yield w
    w.stop()
    await task
    await source.stop()


async def stored(settings: Settings, device_id: str, seq: int) -> int:
    conn = await connect(settings.dsn, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM traffic_observations WHERE device_id = %s AND seq = %s",
            (device_id, seq),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])
    finally:
        await conn.close()


async def test_a_device_publishes_its_own_reading_and_it_is_stored(
    synced: Settings, worker: IngestWorker, clients: list[Client]
) -> None:
    dev, seq = "ts-00041", 900_000 + int(time.time()) % 100_000
    sensor = await asyncio.to_thread(device, synced, dev, clients)
    assert (
        await asyncio.to_thread(sensor.publish, wire.observation_topic(dev), reading(dev, seq))
    ).value == 0
    online = await asyncio.to_thread(
        sensor.publish, wire.availability_topic(dev), b"online", retain=True
    )
    assert online.value == 0
    deadline = time.monotonic() + 20
    while await stored(synced, dev, seq) != 1:
        assert time.monotonic() < deadline, "the device's own reading was not stored"
        await asyncio.sleep(0.2)
    log = LocalServices(synced).mqtt_log_path.read_text(errors="replace")
    assert f"(p5, c1, k10, u'{dev}')" in log  # logged in as itself, not as a shared login


async def test_a_device_cannot_write_another_devices_topics(
    synced: Settings, worker: IngestWorker, clients: list[Client]
) -> None:
    me, victim = "ts-00042", "ts-00043"
    seq = 900_000 + int(time.time()) % 100_000
    watcher = Client(synced, synced.mqtt_sim_user, synced.mqtt_sim_password)
    clients.append(watcher)
    watcher.subscribe(f"ioc/v1/traffic/{victim}/#")
    watcher.subscribe(wire.SIM_CONTROL)
    sensor = device(synced, me, clients)
    forged = reading(victim, seq)
    assert sensor.publish(wire.observation_topic(victim), forged).value == NOT_AUTHORIZED
    assert sensor.publish(wire.availability_topic(victim), b"offline", retain=True).value == (
        NOT_AUTHORIZED
    )
    assert sensor.publish(wire.SIM_CONTROL, b'{"action": "clear"}').value == NOT_AUTHORIZED
    # MQTT 3.1.1 has no reason code in PUBACK: the broker acknowledges and drops the message.
    old = device(synced, "ts-00044", clients, v5=False)
    assert old.publish(wire.observation_topic(victim), reading(victim, seq + 1)).value == 0
    await asyncio.to_thread(fence, synced, watcher, wire.observation_topic(victim), clients)
    await asyncio.to_thread(fence, synced, watcher, wire.SIM_CONTROL, clients)
    payloads = [p for _, p in watcher.messages]
    assert forged not in payloads and b"offline" not in payloads
    assert not any(p.startswith(b'{"action"') for p in payloads)
    assert old.client.is_connected()  # refused messages do not cost the connection
    await asyncio.sleep(1.0)  # the worker is running: nothing of the victim's must be stored
    assert await stored(synced, victim, seq) == 0 and await stored(synced, victim, seq + 1) == 0


def test_wrong_password_unknown_device_and_anonymous_are_refused(synced: Settings) -> None:
    secret = synced.mqtt_device_secret
    attempts = {
        "wrong password": ("ts-00045", "not-the-password"),
        "another device's password": ("ts-00045", mqtt_logins.device_password(secret, "ts-00046")),
        "unregistered device": ("ts-99998", mqtt_logins.device_password(secret, "ts-99998")),
        "other secret": ("ts-00045", mqtt_logins.device_password(secret + "x", "ts-00045")),
        "anonymous": (None, None),
    }
    for what, (user, password) in attempts.items():
        c = Client(synced, user, password)
        try:
            assert c.refused and c.rc.value in (BAD_LOGIN, NOT_AUTHORIZED), (what, c.rc)
        finally:
            c.close()


def test_the_ingest_login_reads_but_cannot_publish(synced: Settings, clients: list[Client]) -> None:
    dev = "ts-00047"
    ingest = Client(synced, synced.mqtt_ingest_user, synced.mqtt_ingest_password)
    clients.append(ingest)
    assert not ingest.refused
    ingest.subscribe(f"ioc/v1/traffic/{dev}/#")
    ingest.subscribe(wire.SIM_CONTROL)  # accepted, but nothing on it is delivered to ingest
    watcher = Client(synced, synced.mqtt_sim_user, synced.mqtt_sim_password)
    clients.append(watcher)
    watcher.subscribe(f"ioc/v1/traffic/{dev}/#")
    forged = reading(dev, 1)
    assert ingest.publish(wire.observation_topic(dev), forged).value == NOT_AUTHORIZED
    own_name = wire.observation_topic(synced.mqtt_ingest_user)  # the device pattern's %u
    assert ingest.publish(own_name, forged).value == NOT_AUTHORIZED
    assert ingest.publish(wire.SIM_CONTROL, b'{"action": "clear"}').value == NOT_AUTHORIZED
    sensor = device(synced, dev, clients)
    genuine = reading(dev, 2)
    assert sensor.publish(wire.observation_topic(dev), genuine).value == 0
    fence(synced, watcher, wire.observation_topic(dev), clients)
    assert forged not in [p for _, p in watcher.messages]
    deadline = time.monotonic() + 5
    while (wire.observation_topic(dev), genuine) not in ingest.messages:
        assert time.monotonic() < deadline, "ingest did not receive the device's reading"
        time.sleep(0.02)
    control = Client(synced, synced.mqtt_sim_user, synced.mqtt_sim_password)
    clients.append(control)
    assert control.publish(wire.SIM_CONTROL, b'{"action": "clear"}').value == 0
    fence(synced, ingest, wire.observation_topic(dev), clients)
    assert not [t for t, _ in ingest.messages if t == wire.SIM_CONTROL]


def test_sync_adds_logins_and_keeps_other_fleets_in_development(
    synced: Settings, clients: list[Client]
) -> None:
    """One broker serves several test databases: a sync never drops another fleet's logins,
    and the broker takes new logins without a restart (SIGHUP)."""
    other = f"other-{uuid.uuid4().hex[:6]}"
    broker = LocalServices(synced).mosquitto
    pid = broker.running()
    result = mqtt_logins.sync_local_broker(synced, [other])
    assert result is not None and result.added == 1
    device(synced, other, clients)  # usable at once
    again = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "mqtt", "sync-logins"],
        env=env_for(synced),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert "0 added, 0 updated" in again.stdout and "others kept" in again.stdout
    device(synced, other, clients)  # still there
    assert broker.running() == pid
    acl = broker.acl_path.read_text()
    assert acl == mqtt_logins.acl_text(synced, sim_login=True)


def test_production_sync_writes_exactly_the_registered_devices(
    synced: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "mosquitto"
    out.mkdir()
    stale = mqtt_logins.hash_password("whatever")
    (out / "passwd").write_text(f"removed-device:{stale}\nioc-sim:{stale}\n")
    env = env_for(
        synced,
        IOC_ENVIRONMENT="production",
        IOC_SECRET_KEY="k" * 40,
        IOC_MQTT_DEVICE_SECRET="production-device-secret",
        IOC_PG_PASSWORD=synced.pg_password,
        IOC_MQTT_INGEST_PASSWORD="production-ingest",
        IOC_MQTT_SIM_PASSWORD="production-sim",
    )
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "mqtt", "sync-logins", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    entries = mqtt_logins.parse_password_file((out / "passwd").read_text())
    with psycopg.connect(synced.dsn) as conn:  # every enabled sensor (other tests add some)
        sensors = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM devices WHERE kind = 'traffic_sensor' AND enabled"
            ).fetchall()
        }
    assert {f"ts-{i:05d}" for i in range(1, 61)} <= sensors
    assert set(entries) == {"ioc-ingest"} | sensors
    assert mqtt_logins.verify_password("production-ingest", entries["ioc-ingest"])
    expected = mqtt_logins.device_password("production-device-secret", "ts-00001")
    assert mqtt_logins.verify_password(expected, entries["ts-00001"])
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    acl = (out / "acl").read_text()
    assert "ioc-sim" not in acl and "pattern write ioc/v1/traffic/%u/observation" in acl
    assert "2 removed" in done.stdout


def test_the_installers_export_gives_working_logins(
    synced: Settings, clients: list[Client]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "mqtt", "device-credentials", "--area", "dong-xoai"],
        env=env_for(synced),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    with psycopg.connect(synced.dsn) as conn:  # Đồng Xoài and any area under it
        below = {
            r[0]
            for r in conn.execute(
                "SELECT area_id FROM area_closure WHERE ancestor_id = 'dong-xoai'"
            ).fetchall()
        }
    assert rows and {r["area_id"] for r in rows} <= below
    assert "dong-xoai" in {r["area_id"] for r in rows}
    assert "keep them secret" in done.stderr  # the report is not mixed into the CSV
    first = rows[0]
    assert first["username"] == first["device_id"]
    assert first["observation_topic"] == wire.observation_topic(first["device_id"])
    c = Client(synced, first["username"], first["password"])
    clients.append(c)
    assert not c.refused


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_the_compose_broker_config_serves_tls_with_generated_logins(tmp_path: Path) -> None:
    """deploy/mosquitto/mosquitto.conf as docker-compose mounts it (paths and ports moved to
    this machine), with production logins from `write_login_files`, on the real broker: a
    device logs in over TLS; plain MQTT on the TLS port and a wrong password get nowhere."""
    root = Path(tempfile.mkdtemp(prefix="ioc-tls-"))
    root.chmod(0o755)
    certs, conf_dir, data = root / "certs", root / "config", root / "data"
    for d in (certs, conf_dir, data):
        d.mkdir()
    _openssl(certs, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=IOC test CA", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    _openssl(certs, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(certs, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    (certs / "server.key").chmod(0o600)
    plain, tls = free_port(), free_port()
    conf = (Path(__file__).parents[2] / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    for mounted, here in (
        ("/mosquitto/config", conf_dir),
        ("/mosquitto/certs", certs),
        ("/mosquitto/data", data),
    ):
        conf = conf.replace(mounted, str(here))
    conf = re.sub(r"^listener 1883$", f"listener {plain} 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^listener 8883$", f"listener {tls} 127.0.0.1", conf, flags=re.M)
    (conf_dir / "mosquitto.conf").write_text(conf)
    prod = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        pg_password="p" * 12,
        secret_key="k" * 40,
        mqtt_ingest_password="ingest-" + uuid.uuid4().hex,
        mqtt_sim_password="sim-" + uuid.uuid4().hex,
        mqtt_device_secret="devices-" + uuid.uuid4().hex,
        mqtt_host="127.0.0.1",
        mqtt_port=tls,
    )
    mqtt_logins.write_login_files(
        conf_dir,
        mqtt_logins.service_logins(prod, sim_login=False)
        | mqtt_logins.device_logins(prod, ["ts-00001"]),
        mqtt_logins.acl_text(prod, sim_login=False),
        keep_others=False,
    )
    # The image's entrypoint gives /mosquitto to the broker's user; so do we when root.
    RunAs.service_user("mosquitto").chown_tree(root)
    broker = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf_dir / "mosquitto.conf")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not (port_accepts("127.0.0.1", tls) and port_accepts("127.0.0.1", plain)):
            assert broker.poll() is None, broker.communicate()[0].decode()
            assert time.monotonic() < deadline, "the broker did not open its listeners"
            time.sleep(0.05)
        device_pw = mqtt_logins.device_password(prod.mqtt_device_secret, "ts-00001")
        ca = certs / "ca.crt"
        sensor = Client(prod, "ts-00001", device_pw, ca=ca)
        assert not sensor.refused, sensor.rc
        own = sensor.publish(wire.observation_topic("ts-00001"), reading("ts-00001", 1))
        assert not own.is_failure  # "no matching subscribers": accepted, nobody listens
        assert sensor.publish(wire.observation_topic("ts-00002"), b"{}").value == NOT_AUTHORIZED
        sensor.close()
        wrong = Client(prod, "ts-00001", "wrong", ca=ca)
        assert wrong.refused
        wrong.close()
        cleartext = Client(prod, "ts-00001", device_pw, expect_connack=False)
        assert cleartext.rc is None  # no CONNACK: the TLS listener does not speak plain MQTT
        cleartext.close()
        ingest = Client(prod.model_copy(update={"mqtt_port": plain}), "ioc-ingest",
                        prod.mqtt_ingest_password)  # fmt: skip
        assert not ingest.refused  # the centre's containers use plain 1883 inside
        ingest.close()
    finally:
        broker.terminate()
        log = broker.communicate(timeout=10)[0].decode(errors="replace")
        shutil.rmtree(root, ignore_errors=True)
    assert "u'ts-00001'" in log and f"port {tls}" in log
