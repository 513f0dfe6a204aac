"""``ioc bench alerts``: from a sensor publishing the reading that breaks a rule to the alert
arriving at a websocket client, under steady background traffic, against bare MQTT latency.

The whole real path runs on isolated services: Mosquitto → `ioc ingest mqtt` → TimescaleDB →
`ioc alerts` (woken by the ingest commit's NOTIFY) → events → `ioc api` → websocket. Each probe (after one
uncounted warm-up) uses a sensor that carries no background traffic, publishes one very slow reading, and times
the `alert.firing` event for that sensor; then a fast reading resolves it. In the same run a bare
paho subscriber measures publish→receive on the same broker under the same background load.
``ratio`` = bare MQTT p99 / our p99 (1.0 would mean alerting costs nothing over MQTT).
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from websockets.asyncio.client import connect as ws_connect

from ioc.bench.common import (
    bearer,
    bench_token,
    isolated_stack,
    mqtt_client,
    probe_reading,
    spawn,
    wait_for_line,
    wait_http,
)
from ioc.config import Settings
from ioc.domain import wire

SENSORS = 500
BACKGROUND = 400  # ts-00001..ts-00400 carry background traffic; the rest are probes
RULES = """rules:
  - id: bench.stopped
    title: "Dừng xe"
    title_en: "Stopped"
    metric: average_speed
    op: below
    threshold: 5
    clear: 20
    window_s: 5
    for_s: 0
    severity: major
"""


class Background(threading.Thread):
    def __init__(self, settings: Settings, rate: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.rate, self.stop, self.sent = settings, rate, threading.Event(), 0
        self.elapsed = 0.0

    def run(self) -> None:
        c = mqtt_client(self.settings, "bench-bg", inflight=1000)
        start, seq = time.monotonic(), 0
        while not self.stop.is_set():
            for i in range(BACKGROUND):
                dev = f"ts-{i + 1:05d}"
                c.publish(wire.observation_topic(dev), probe_reading(dev, seq, 50.0), qos=1)
                self.sent += 1
                ahead = self.sent / self.rate - (time.monotonic() - start)
                if ahead > 0.005:
                    time.sleep(ahead)
                if self.stop.is_set():
                    break
            seq += 1
        self.elapsed = time.monotonic() - start
        c.disconnect()
        c.loop_stop()


def bare_mqtt_latencies(settings: Settings, probes: int) -> list[float]:
    got: dict[str, float] = {}
    done = threading.Event()

    def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        got[m.topic] = time.perf_counter()
        done.set()

    sub = mqtt_client(settings, "bench-bare", ingest=True)
    sub.on_message = on_message
    sub.subscribe("ioc/v1/traffic/+/observation", qos=1)
    time.sleep(0.5)
    pub = mqtt_client(settings, "bench-probe")
    out = []
    for i in range(probes):
        dev = f"ts-{BACKGROUND + 1 + i % (SENSORS - BACKGROUND):05d}"
        topic = wire.observation_topic(dev)
        got.pop(topic, None)
        sent = time.perf_counter()
        pub.publish(topic, probe_reading(dev, 10_000 + i, 50.0), qos=1)
        deadline = time.monotonic() + 5
        while topic not in got and time.monotonic() < deadline:
            done.wait(0.01)
            done.clear()
        if topic in got:
            out.append(got[topic] - sent)
        time.sleep(0.05)
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    return out


async def pipeline_latencies(
    settings: Settings, url: str, probes: int, token: str
) -> tuple[list[float], int]:
    pub = mqtt_client(settings, "bench-probe")
    out: list[float] = []
    missed = 0
    async with ws_connect(url + "?kind=alert.", additional_headers=bearer(token)) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        for i in range(probes):
            dev = f"ts-{BACKGROUND + 1 + i % (SENSORS - BACKGROUND):05d}"
            topic = wire.observation_topic(dev)
            sent = time.perf_counter()
            pub.publish(topic, probe_reading(dev, 2 * i, 1.0), qos=1)
            arrived = None
            deadline = time.monotonic() + 10
            while arrived is None and time.monotonic() < deadline:
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except TimeoutError:
                    continue
                if (
                    msg.get("kind") == "alert.firing"
                    and msg.get("alert", {}).get("device_id") == dev
                ):
                    arrived = time.perf_counter()
            if arrived is None:
                missed += 1
            else:
                out.append(arrived - sent)
            # Clear it again (the window must forget the slow reading), then next probe.
            await asyncio.sleep(0.1)
            pub.publish(topic, probe_reading(dev, 2 * i + 1, 100.0), qos=1)
            await asyncio.sleep(0.2)
    pub.disconnect()
    pub.loop_stop()
    return out, missed


def _breakdown(settings: Settings) -> dict[str, float]:
    """Where the time goes, from the database's own clocks (medians over the probes):
    reading made -> stored (broker + ingest), stored -> alert opened (engine),
    alert opened -> event row (the alert transaction)."""
    import psycopg

    with psycopg.connect(settings.dsn) as conn:
        row = conn.execute(
            """SELECT
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM o.received_at - o.time)),
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.started_at - o.received_at)),
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.time - a.started_at))
               FROM alerts a
               JOIN LATERAL (SELECT * FROM traffic_observations o WHERE o.device_id = a.device_id
                             AND o.average_speed < 5 AND o.time <= a.started_at
                             ORDER BY o.time DESC LIMIT 1) o ON true
               JOIN events e ON e.alert_id = a.id AND e.kind = 'alert.firing'
               WHERE a.rule_id = 'bench.stopped'"""
        ).fetchone()
    names = ("made_to_stored", "stored_to_alert", "alert_to_event")
    return {
        n: round(float(v) * 1000, 1)
        for n, v in zip(names, row or (), strict=False)
        if v is not None
    }


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    probes = 30 if quick else 200
    rate = 2000
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-alerts-"))
    rules = logs / "rules.yaml"
    rules.write_text(RULES)
    with isolated_stack(settings, sensors=SENSORS) as bench:
        env = {
            "IOC_RULES_FILE": str(rules),
            "IOC_MQTT_CLIENT_ID": "bench-ingest",
            "IOC_LOG_LEVEL": "INFO",
        }
        procs = [
            (spawn(bench, "ingest", "mqtt", log=logs / "ingest.log", **env), "ingest.log"),
            (spawn(bench, "alerts", log=logs / "alerts.log", **env), "alerts.log"),
            (spawn(bench, "api", log=logs / "api.log", **env), "api.log"),
        ]
        try:
            wait_http(f"http://127.0.0.1:{bench.api_port}/api/v1/health", procs[2][0], 60)
            wait_for_line(procs[0][0], logs / "ingest.log", "ingest worker running", 30)
            time.sleep(1.0)
            bg = Background(bench, rate)
            bg.start()
            time.sleep(3.0)  # steady state
            bare = bare_mqtt_latencies(bench, probes)
            url = f"ws://127.0.0.1:{bench.api_port}/api/v1/stream"
            # One warm-up probe first (not counted): the first alert of a fresh process pays
            # for connections and query plans once, which a running centre has long paid.
            token = asyncio.run(bench_token(bench, f"http://127.0.0.1:{bench.api_port}"))
            ours, missed = asyncio.run(pipeline_latencies(bench, url, probes + 1, token))
            ours = ours[1:] if not missed else ours
            bg.stop.set()
            bg.join(10)
            breakdown = _breakdown(bench)
        finally:
            for p, _ in reversed(procs):
                p.send_signal(signal.SIGTERM)
                p.wait(30)
    result = {
        "bench": "alerts",
        "probes": probes,
        "missed": missed,
        "background_msgs_s": round(bg.sent / bg.elapsed) if bg.elapsed else None,
        "p50_ms": round(_pct(ours, 0.5), 1),
        "p99_ms": round(_pct(ours, 0.99), 1),
        "max_ms": round(max(ours) * 1000, 1) if ours else None,
        "slowest": sorted(((round(x * 1000), i) for i, x in enumerate(ours)), reverse=True)[:3],
        "mean_ms": round(statistics.fmean(ours) * 1000, 1) if ours else None,
        "bare_mqtt_p50_ms": round(_pct(bare, 0.5), 2),
        "bare_mqtt_p99_ms": round(_pct(bare, 0.99), 2),
        "target_p99_ms": 200,
        "breakdown_ms": breakdown,
        "ratio": round(_pct(bare, 0.99) / _pct(ours, 0.99), 4) if ours else None,
        "logs": str(logs),
    }
    return result
