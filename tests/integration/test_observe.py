"""The centre watches itself: every role as a real process serves /metrics, /healthz and
/readyz; readiness follows what the role depends on; a reading's correlation id reaches the
alert it raises; the API answers readiness, request ids and freshness per source."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from ioc.bench.common import spawn
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.domain import wire
from tests.conftest import api_client, drop_database, free_port, own_database, sign_in

pytestmark = pytest.mark.integration

RULES = """
rules:
  - id: test.observe.stopped
    title: "Dừng hẳn"
    title_en: "Stopped"
    device_kind: traffic_sensor
    metric: average_speed
    op: below
    threshold: 1
    clear: 5
    window_s: 60
    for_s: 0
    severity: major
"""
COMMON = ("process_start_time_seconds",)
EXPECTED = {
    "ingest": (
        "ioc_ingest_received_total",
        "ioc_ingest_stored_total",
        'ioc_ingest_rejected_total{reason="bad_json",source="mqtt"}',
        "ioc_ingest_lag_seconds_bucket",
        "ioc_ingest_broker_connected 1.0",
        "ioc_ingest_database_ok_timestamp_seconds",
    ),
    "rtsp": (
        "ioc_camera_leases_held{",
        "ioc_camera_leases_unowned{",
        "ioc_camera_lease_takeovers_total",
        "ioc_camera_lease_cycles_total{",
        "ioc_camera_captures",
        "ioc_camera_capture_reconnects_total",
        'ioc_camera_status{status="ok"}',
        'ioc_camera_open_failures_total{reason="unreachable"}',
    ),
    "alerts": (
        'ioc_alerts_open{severity="major",status="firing"}',
        'ioc_alerts_transitions_total{action="open_firing"}',
        "ioc_alerts_cycle_seconds_bucket",
        "ioc_alerts_last_cycle_timestamp_seconds",
        "ioc_alerts_cycle_errors_total",
    ),
    "rollups": (
        'ioc_rollup_lag_seconds{rollup="traffic"}',
        "ioc_rollup_ticks_total",
        "ioc_rollup_tick_seconds_bucket",
        "ioc_rollup_last_tick_timestamp_seconds",
    ),
}
CHECKS = {
    "ingest": {"broker", "database"},
    "rtsp": {"leases", "database"},
    "alerts": {"evaluation"},
    "rollups": {"tick"},
}


# ------------------------------------------------------------------------------ helpers ---


@dataclass
class Role:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def start_role(settings: Settings, name: str, args: list[str], port_var: str, log: Path,
               **env: str) -> Role:  # fmt: skip
    port = free_port()
    proc = spawn(settings, *args, log=log, **{port_var: str(port)}, **env)
    return Role(name, proc, log, port)


def wait_status(role: Role, path: str, want: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        if role.proc.poll() is not None:
            pytest.fail(
                f"{role.name} exited ({role.proc.returncode}):\n{role.log.read_text()[-3000:]}"
            )
        try:
            status, body = role.get(path)
        except OSError:
            status = 0
        if status == want:
            return dict(json.loads(body))
        time.sleep(0.2)
    pytest.fail(f"{role.name} {path}: {status} {body[:500]}, not {want} within {timeout} s")


class Proxy:
    """A TCP forwarder on a free port to 127.0.0.1:``target``; :meth:`close` cuts it all, as a
    dependency going away would (the shared service itself stays up for the other tests)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def publish(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-observe-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    try:
        for info in [c.publish(t, body, qos=1) for t, body in messages]:
            info.wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def reading(device: str, seq: int, speed: float) -> tuple[str, bytes]:
    o = wire.TrafficObservation(
        device_id=device, seq=seq, observed_at=datetime.now(UTC), intensity=3,
        average_speed=speed, occupancy=0.9, interval_s=1,
    )  # fmt: skip
    return wire.observation_topic(device), o.to_payload()


# ----------------------------------------------------------------------------- fixtures ---


@pytest.fixture(scope="module")
async def db(services: Settings) -> AsyncIterator[Settings]:
    """An own database: the roles and the freshness answers see only this module's data."""
    settings, name = await own_database(services, "ioc_observe")
    conn = await connect(settings.dsn, autocommit=True)
    try:
        await seed(conn, load_geography(settings.areas_file), sensors=20, seed_value=58)
    finally:
        await conn.close()
    yield settings
    await drop_database(services, name)


@pytest.fixture(scope="module")
def roles(db: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Role]]:
    tmp = tmp_path_factory.mktemp("observe")
    (tmp / "rules.yaml").write_text(RULES, encoding="utf-8")
    tag = uuid.uuid4().hex[:8]
    assert db.database_url is not None
    env = {"IOC_DATABASE_URL": db.database_url, "IOC_LOG_FORMAT": "json",
           "IOC_RULES_FILE": str(tmp / "rules.yaml")}  # fmt: skip
    specs = {
        "ingest": (["ingest", "mqtt"], "IOC_INGEST_METRICS_PORT",
                   {"IOC_MQTT_CLIENT_ID": f"obs-{tag}", "IOC_MQTT_SHARE_GROUP": f"obs-{tag}",
                    "IOC_LOG_LEVEL": "DEBUG"}),
        "rtsp": (["ingest", "rtsp"], "IOC_RTSP_METRICS_PORT",
                 {"IOC_CAMERA_POOL": f"obs-{tag}", "IOC_CAMERA_WORKER_ID": f"obs-{tag}"}),
        "alerts": (["alerts"], "IOC_ALERTS_METRICS_PORT", {}),
        "rollups": (["rollups"], "IOC_ROLLUPS_METRICS_PORT", {}),
    }  # fmt: skip
    started: dict[str, Role] = {}
    try:
        for name, (args, port_var, extra) in specs.items():
            started[name] = start_role(db, name, args, port_var, tmp / f"{name}.log",
                                       **(env | extra))  # fmt: skip
        for role in started.values():
            wait_status(role, "/readyz", 200, 90)
        yield started
    finally:
        codes = {name: role.stop() for name, role in started.items()}
        assert codes == dict.fromkeys(started, 0), codes  # an orderly stop, observer included


@pytest.fixture(scope="module")
async def api(db: Settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = db.model_copy(
        update={"freshness_stale_seconds": {"cameras": 60.0, "default": 120.0}}
    )
    async with api_client(settings) as c:
        yield c


# -------------------------------------------------------------------------------- tests ---


async def test_every_role_serves_metrics_liveness_and_readiness(roles: dict[str, Role]) -> None:
    for name, role in roles.items():
        live = await asyncio.to_thread(wait_status, role, "/healthz", 200, 10)
        assert live["status"] == "alive" and live["loop_beat_age_s"] < 5
        ready = await asyncio.to_thread(wait_status, role, "/readyz", 200, 10)
        assert set(ready["checks"]) == CHECKS[name], ready
        assert all(c["ok"] for c in ready["checks"].values()), ready
        status, text = await asyncio.to_thread(role.get, "/metrics")
        assert status == 200
        missing = [m for m in (*EXPECTED[name], *COMMON) if m not in text]
        assert not missing, f"{name}: no {missing} in /metrics"
        assert (await asyncio.to_thread(role.get, "/nowhere"))[0] == 404


async def test_a_readings_correlation_id_reaches_its_alert(
    db: Settings, roles: dict[str, Role]
) -> None:
    device, seq = "ts-00007", 424242
    cid = wire.correlation_id(device, seq)
    await asyncio.to_thread(
        publish, db, [reading(device, seq, 0.2), (wire.observation_topic(device), b"{oops")]
    )
    conn = await connect(db.dsn, autocommit=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            cur = await conn.execute(
                "SELECT kind, payload FROM events WHERE device_id = %s AND kind LIKE 'alert.%%'"
                " ORDER BY id",
                (device,),
            )
            rows = await cur.fetchall()
            if rows or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    finally:
        await conn.close()
    assert rows, "no alert event for the published reading"
    assert rows[0]["kind"] == "alert.firing"
    assert rows[0]["payload"]["correlation_id"] == cid
    assert rows[0]["payload"]["rule_id"] == "test.observe.stopped"
    # ... and both roles logged it under the same id, as JSON.
    ingest = [e for e in roles["ingest"].json_lines() if e.get("correlation_id") == cid]
    assert any(e["event"] == "reading written" for e in ingest), "ingest did not log the id"
    alerts = [e for e in roles["alerts"].json_lines() if e.get("correlation_id") == cid]
    assert any(e["event"] == "alert" and e["action"] == "open_firing" for e in alerts)
    # The garbage is a dead letter with its reason. Its log line names no correlation id (none
    # can be recovered from "{oops"); on a shared broker retained messages of other tests'
    # devices may use up the per-window log budget first, so the table is the proof.
    conn = await connect(db.dsn, autocommit=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM dead_letters WHERE reason = 'bad_json' AND payload = %s",
                (b"{oops",),
            )
            n = (await cur.fetchone())["n"]  # type: ignore[index]
            if n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
    finally:
        await conn.close()
    assert n == 1
    letters = [e for e in roles["ingest"].json_lines() if e.get("event") == "dead letter"]
    assert all(e["correlation_id"] is None for e in letters if e["reason"] == "bad_json")
    status, text = await asyncio.to_thread(roles["alerts"].get, "/metrics")
    assert 'ioc_alerts_transitions_total{action="open_firing"} 1.0' in text


async def test_api_ready_request_id_and_metrics(db: Settings, api: httpx.AsyncClient) -> None:
    r = await api.get("/api/v1/ready")
    assert r.status_code == 200, r.text
    assert r.json() | {"stream_position": 0} == {
        "status": "ready", "database": True, "stream": True, "stream_position": 0,
    }  # fmt: skip
    # X-Request-ID: the caller's is kept, a missing or malformed one is replaced by ours.
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        r = await api.get("/api/v1/freshness", headers={"X-Request-ID": "op-7f3a.42"})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == "op-7f3a.42"
    (line,) = [e for e in logs if e.get("request_id") == "op-7f3a.42" and e["event"] == "request"]
    assert line["status"] == 401 and line["path"] == "/api/v1/freshness"
    made = (await api.get("/api/v1/health")).headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    odd = (await api.get("/api/v1/health", headers={"X-Request-ID": "x" * 300})).headers
    assert odd["X-Request-ID"] != "x" * 300 and len(odd["X-Request-ID"]) == 32
    text = (await api.get("/metrics/")).text
    for name in ("ioc_db_pool_size", "ioc_db_pool_available", "ioc_db_pool_waiting",
                 "ioc_db_pool_requests_total", "ioc_stream_clients", "ioc_stream_resyncs_total",
                 "ioc_stream_events_total", "ioc_database_up 1.0"):  # fmt: skip
        assert name in text, name


async def test_freshness_per_source_with_stale_flags(
    db: Settings, roles: dict[str, Role], api: httpx.AsyncClient
) -> None:
    r = await api.get("/api/v1/freshness")
    assert r.status_code == 401  # signed-in users only
    await sign_in(api, db.dsn, "observer", role="leader")
    conn = await connect(db.dsn, autocommit=True)
    try:  # a camera whose last health row is 10 minutes old: stale against 60 s
        await conn.execute(
            "INSERT INTO camera_health (time, device_id, connected, status) "
            "VALUES (now() - interval '10 minutes', 'ts-00001', true, 'ok')"
        )
    finally:
        await conn.close()
    await asyncio.to_thread(publish, db, [reading("ts-00003", 1, 40.0)])
    deadline = time.monotonic() + 20
    while True:
        body = (await api.get("/api/v1/freshness")).json()
        src = body["sources"]
        if src["traffic"]["age_seconds"] is not None and src["traffic"]["age_seconds"] < 10:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)
    assert set(src) == {"traffic", "cameras", "alerts", "rollups", "events"}
    assert body["stale"] == ["cameras"], body
    assert 590 < src["cameras"]["age_seconds"] < 700
    assert src["cameras"]["stale_after_seconds"] == 60.0 and src["cameras"]["stale"]
    assert src["alerts"]["age_seconds"] < 30  # the running engine's heartbeat
    assert src["rollups"]["age_seconds"] < 120  # the running rollups' watermark
    assert src["traffic"]["detail"]["observed_at"] is not None
    assert src["events"]["detail"]["listening"] is True
    now = datetime.fromisoformat(body["now"])
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=30)


async def test_readiness_follows_the_dependencies(services: Settings, db: Settings,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """Cut each role's link to what it needs (through a proxy: the session's broker and
    database stay up for everyone else): its /readyz turns 503 naming the failed check, while
    /healthz stays 200 (the process is fine; restarting it would not help)."""
    broker, database = Proxy(services.mqtt_port), Proxy(services.pg_port)
    tag = uuid.uuid4().hex[:8]
    assert db.database_url is not None
    via_proxy = db.database_url.replace(f":{services.pg_port}/", f":{database.port}/")
    roles = [
        start_role(db, "ingest", ["ingest", "mqtt"], "IOC_INGEST_METRICS_PORT",
                   tmp_path / "ingest.log", IOC_DATABASE_URL=db.database_url,
                   IOC_MQTT_PORT=str(broker.port), IOC_MQTT_CLIENT_ID=f"obs-cut-{tag}",
                   IOC_MQTT_SHARE_GROUP=f"obs-cut-{tag}"),
        start_role(db, "rtsp", ["ingest", "rtsp"], "IOC_RTSP_METRICS_PORT",
                   tmp_path / "rtsp.log", IOC_DATABASE_URL=via_proxy,
                   IOC_CAMERA_POOL=f"obs-cut-{tag}", IOC_CAMERA_WORKER_ID=f"obs-cut-{tag}",
                   IOC_CAMERA_LEASE_SECONDS="3"),
    ]  # fmt: skip
    try:
        for role in roles:
            await asyncio.to_thread(wait_status, role, "/readyz", 200, 60)
        broker.close()
        database.close()
        ingest = await asyncio.to_thread(wait_status, roles[0], "/readyz", 503, 20)
        assert ingest["checks"]["broker"]["ok"] is False
        rtsp = await asyncio.to_thread(wait_status, roles[1], "/readyz", 503, 20)
        assert rtsp["checks"]["leases"]["ok"] is False
        for role in roles:
            assert (await asyncio.to_thread(role.get, "/healthz"))[0] == 200
        _, text = await asyncio.to_thread(roles[0].get, "/metrics")
        assert "ioc_ingest_broker_connected 0.0" in text
    finally:
        for role in roles:
            role.stop()
        broker.close()
        database.close()
