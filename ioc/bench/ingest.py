"""``ioc bench ingest``: MQTT readings stored per second, end to end, against two baselines.

Method (all in one run, on isolated services started for the benchmark):
- The messages are published while the consumer is away, into its persistent session, so the
  broker holds them all; then the consumer starts and we time how fast it drains them. This
  measures the consumer, not the publisher.
- Baseline 1, broker pass-through: a bare paho subscriber (automatic acks) drains the same
  messages.
- Baseline 2, database: one COPY of the same rows straight into the same hypertable.
- End to end: `ioc ingest mqtt` (1 worker, then 2 in a shared group) drains them into the
  database; the rate is taken from its first stored row to its last.
``ratio`` = end-to-end (1 worker) / min(the two baselines).
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ioc.bench.common import isolated_stack, spawn, wait_for_line
from ioc.config import Settings
from ioc.domain import wire

SENSORS = 500


def _client(settings: Settings, client_id: str, *, ingest: bool) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    if ingest:
        c.username_pw_set(settings.mqtt_ingest_user, settings.mqtt_ingest_password)
    else:
        c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    return c


def _messages(n: int, seq_base: int) -> list[tuple[str, bytes, tuple[Any, ...]]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for i in range(n):
        device = f"ts-{i % SENSORS + 1:05d}"
        o = wire.TrafficObservation(
            device_id=device,
            seq=seq_base + i // SENSORS,
            observed_at=start + timedelta(milliseconds=i),
            intensity=7,
            average_speed=42.5,
            occupancy=0.21,
            interval_s=60,
        )
        row = (o.observed_at, device, o.seq, o.intensity, o.average_speed, o.occupancy, 60)
        out.append((wire.observation_topic(device), o.to_payload(), row))
    return out


def _publish(settings: Settings, messages: list[tuple[str, bytes, Any]]) -> None:
    c = _client(settings, f"bench-pub-{uuid.uuid4().hex[:6]}", ingest=False)
    c.max_inflight_messages_set(500)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    infos = [c.publish(topic, body, qos=1) for topic, body, _ in messages]
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()


def _session(settings: Settings, client_id: str, topic: str) -> mqtt.Client:
    c = _client(settings, client_id, ingest=True)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=props)
    return c


def bare_subscriber_rate(settings: Settings, messages: list[tuple[str, bytes, Any]]) -> float:
    topic = wire.TRAFFIC_OBSERVATION_FILTER
    cid = f"bench-bare-{uuid.uuid4().hex[:6]}"
    c = _session(settings, cid, topic)
    c.loop_start()
    c.subscribe(topic, qos=1)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    _publish(settings, messages)
    got, done, first = [0], threading.Event(), [0.0]

    def on_message(_c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        if got[0] == 0:
            first[0] = time.perf_counter()
        got[0] += 1
        if got[0] >= len(messages):
            done.set()

    c = _session(settings, cid, topic)
    c.on_message = on_message
    c.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"bare subscriber got {got[0]} of {len(messages)}")
    elapsed = time.perf_counter() - first[0]
    c.disconnect()
    c.loop_stop()
    return (len(messages) - 1) / elapsed


def copy_rate(settings: Settings, messages: list[tuple[str, bytes, Any]]) -> float:
    with psycopg.connect(settings.dsn) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY traffic_observations (time, device_id, seq, intensity, average_speed,"
                " occupancy, interval_s) FROM STDIN"
            ) as copy,
        ):
            for _, _, row in messages:
                copy.write_row(row)
        conn.commit()
        return len(messages) / (time.perf_counter() - started)


def _count(settings: Settings, seq_base: int, n: int) -> int:
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM traffic_observations WHERE seq >= %s AND seq < %s",
            (seq_base, seq_base + n // SENSORS + 1),
        ).fetchone()
        return int(row[0]) if row else 0


def end_to_end_rate(
    settings: Settings,
    messages: list[tuple[str, bytes, Any]],
    seq_base: int,
    workers: int,
    logs: Path,
) -> float:
    tag = uuid.uuid4().hex[:6]
    group = f"bench-{tag}" if workers > 1 else ""
    envs = [
        {"IOC_MQTT_CLIENT_ID": f"bench-ingest-{tag}-{i}", "IOC_MQTT_SHARE_GROUP": group}
        for i in range(workers)
    ]
    # First start creates each worker's persistent session (and subscription), then stop.
    procs = [
        spawn(settings, "ingest", "mqtt", log=logs / f"w{i}-a.log", **e) for i, e in enumerate(envs)
    ]
    for i, p in enumerate(procs):
        wait_for_line(p, logs / f"w{i}-a.log", "mqtt connected", 30)
    for p in procs:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    _publish(settings, messages)
    n = len(messages)
    procs = [
        spawn(settings, "ingest", "mqtt", log=logs / f"w{i}-b.log", **e) for i, e in enumerate(envs)
    ]
    try:
        first_at, first_count = 0.0, 0
        deadline = time.monotonic() + 600
        while True:
            got = _count(settings, seq_base, n)
            now = time.perf_counter()
            if got and not first_at:
                first_at, first_count = now, got
            if got >= n:
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"stored {got} of {n}; see {logs}")
            time.sleep(0.05)
        return (n - first_count) / max(now - first_at, 1e-6)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(30)


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-ingest-"))
    with isolated_stack(settings, sensors=SENSORS) as bench:
        base = 1_000_000
        bare = bare_subscriber_rate(bench, _messages(n, base))
        copy = copy_rate(bench, _messages(n, base + 100_000))
        one = end_to_end_rate(bench, _messages(n, base + 200_000), base + 200_000, 1, logs)
        two = end_to_end_rate(bench, _messages(n, base + 300_000), base + 300_000, 2, logs)
    baseline = min(bare, copy)
    return {
        "bench": "ingest",
        "messages": n,
        "payload_bytes": len(_messages(1, 0)[0][1]),
        "e2e_1_worker_rows_s": round(one),
        "e2e_2_workers_rows_s": round(two),
        "bare_subscriber_msgs_s": round(bare),
        "copy_rows_s": round(copy),
        "ratio": round(one / baseline, 3),
        "ratio_2_workers": round(two / baseline, 3),
        "logs": str(logs),
    }
