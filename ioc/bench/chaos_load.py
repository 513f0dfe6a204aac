"""The steady load of ``ioc bench chaos``: readings with per-device sequence numbers, alert
episodes, a malformed flood, stream events, resuming websocket clients and a lag probe.

Everything here only counts: what was acknowledged by the broker, what each client received.
The verdict (what was lost, missed, duplicated) is computed from the database in
``ioc.bench.chaos`` at the end.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from ioc.bench.common import bearer, ensure_user, login, mqtt_client, probe_reading
from ioc.config import Settings
from ioc.domain import wire

RULE_ID = "chaos.stopped"
RULES = f"""rules:
  - id: {RULE_ID}
    title: "Dừng xe (chaos)"
    title_en: "Stopped (chaos)"
    device_kind: traffic_sensor
    metric: average_speed
    op: below
    threshold: 5
    clear: 20
    window_s: 5
    for_s: 0
    severity: major
"""
SLOW_S = 20  # an episode's slow readings last longer than any fault's outage of the engine
FAST_S = 10


def _acked(info: mqtt.MQTTMessageInfo) -> bool:
    # Not wait_for_publish(): a message published while the broker was down keeps rc=NO_CONN
    # although paho queued it and delivers it after reconnecting (see test_ingest_faults.py).
    return bool(info._published)  # noqa: SLF001


class Publisher(threading.Thread):
    """QoS 1 readings at ``rate`` a second, round robin over ``devices``, plus alert episodes.

    Each episode takes a fresh probe device (no background traffic): ``SLOW_S`` readings a
    second at 1 km/h (the rule fires), then ``FAST_S`` at 100 km/h (it resolves)."""

    def __init__(
        self, settings: Settings, devices: list[str], probes: list[str], rate: float,
        episode_every_s: float,
    ) -> None:  # fmt: skip
        super().__init__(daemon=True, name="chaos-publisher")
        self.settings, self.devices, self.rate = settings, devices, rate
        self.probes, self.episode_every_s = probes, episode_every_s
        self.stop_publishing = threading.Event()
        self.sent: list[tuple[str, int, mqtt.MQTTMessageInfo]] = []
        self.episodes: list[tuple[str, float]] = []  # (device, monotonic start)
        self.sent_at: dict[tuple[str, int], float] = {}  # wall clock, for the kill window
        self._seq: dict[str, int] = {}

    def _publish(self, c: mqtt.Client, dev: str, speed: float) -> None:
        seq = self._seq.get(dev, 0)
        self._seq[dev] = seq + 1
        info = c.publish(wire.observation_topic(dev), probe_reading(dev, seq, speed), qos=1)
        self.sent.append((dev, seq, info))
        self.sent_at[(dev, seq)] = time.time()

    def run(self) -> None:
        c = mqtt_client(self.settings, "chaos-pub", inflight=1000, reconnect_max_s=2)
        start, n, i = time.monotonic(), 0, 0
        next_probe_tick = start + 1.0
        next_episode = start + 5.0
        active: list[tuple[str, float]] = []
        while not self.stop_publishing.is_set():
            now = time.monotonic()
            if now >= next_episode and len(self.episodes) < len(self.probes):
                ep = (self.probes[len(self.episodes)], now)
                self.episodes.append(ep)
                active.append(ep)
                next_episode = now + self.episode_every_s
            if now >= next_probe_tick:
                next_probe_tick += 1.0
                for dev, t0 in list(active):
                    age = now - t0
                    if age >= SLOW_S + FAST_S:
                        active.remove((dev, t0))
                    else:
                        self._publish(c, dev, 1.0 if age < SLOW_S else 100.0)
            self._publish(c, self.devices[i % len(self.devices)], 50.0)
            i += 1
            n += 1
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0.002:
                time.sleep(ahead)
        # Finish the running episodes' fast phase so every alert can resolve, then wait acks.
        while active:
            now = time.monotonic()
            for dev, t0 in list(active):
                if now - t0 >= SLOW_S + FAST_S:
                    active.remove((dev, t0))
                else:
                    self._publish(c, dev, 1.0 if now - t0 < SLOW_S else 100.0)
            time.sleep(1.0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(_acked(x[2]) for x in self.sent):
            time.sleep(0.2)
        c.disconnect()
        c.loop_stop()

    def acknowledged(self) -> set[tuple[str, int]]:
        return {(d, s) for d, s, info in self.sent if _acked(info)}

    def attempted(self) -> set[tuple[str, int]]:
        return {(d, s) for d, s, _ in self.sent}

    def complete_episodes(self, until: float) -> list[str]:
        """Probe devices whose slow phase ended before ``until`` (their alert is expected)."""
        return [d for d, t0 in self.episodes if t0 + SLOW_S <= until]


MALFORMED: list[bytes] = [
    b'{"v": 1, "device_id": ',  # bad_json (truncated)
    b"\xff\xfe not utf-8",  # bad_json
    b"[1, 2, 3]",  # bad_json (not an object)
    b'{"v": 2, "device_id": "x"}',  # unsupported_version
    b'{"v": 1, "device_id": "ts-00001", "seq": "one"}',  # schema
]


def flood(settings: Settings, device: str, count: int) -> int:
    """``count`` malformed payloads on ``device``'s topic as fast as the broker takes them;
    returns how many the broker acknowledged (each must end up as a dead letter)."""
    c = mqtt_client(settings, "chaos-flood", inflight=1000, reconnect_max_s=2)
    infos = [
        c.publish(wire.observation_topic(device), MALFORMED[k % len(MALFORMED)], qos=1)
        for k in range(count)
    ]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_acked(i) for i in infos):
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    return sum(_acked(i) for i in infos)


# ------------------------------------------------------------------------ stream events ---


class EventProducer(threading.Thread):
    """Appends ``chaos.tick`` events at ``rate`` a second (each its own transaction, as the
    engine and the API write them), so the websocket clients have a steady stream to check;
    survives database restarts."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__(daemon=True, name="chaos-events")
        self.settings, self.rate, self.stop = settings, rate, threading.Event()
        self.appended = 0
        self.failures = 0

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from ioc.db import events
        from ioc.db.connect import DatabaseUnavailable, connect

        conn = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await connect(self.settings.dsn, autocommit=True)
                async with conn.transaction():
                    await events.append(
                        conn, kind="chaos.tick", payload={"n": self.appended}, actor="bench"
                    )
                self.appended += 1
            except (psycopg.Error, OSError, DatabaseUnavailable):
                self.failures += 1
                conn = None
                await asyncio.sleep(0.5)
                continue
            await asyncio.sleep(1 / self.rate)
        if conn is not None and not conn.closed:
            await conn.close()


# --------------------------------------------------------------------- websocket clients ---


@dataclass
class WsClient:
    """One screen: resumes with ``since`` after any drop, on whichever API answers."""

    name: str
    urls: list[str]
    query: str = ""  # e.g. "kind=alert."
    kind_prefix: str | None = None  # what ``query`` means, to filter the table the same way
    received: list[int] = field(default_factory=list)
    first_watermark: int | None = None
    last: int | None = None
    snapshots: int = 0
    connects: int = 0
    freeze_until: float = 0.0

    def url(self, k: int) -> str:
        params = [
            p for p in (self.query, f"since={self.last}" if self.last is not None else "") if p
        ]
        return self.urls[k % len(self.urls)] + ("?" + "&".join(params) if params else "")


class Screens(threading.Thread):
    """Runs the websocket clients in their own event loop."""

    def __init__(self, settings: Settings, base_urls: list[str], clients: list[WsClient]) -> None:
        super().__init__(daemon=True, name="chaos-ws")
        self.settings, self.base_urls, self.clients = settings, base_urls, clients
        self.stop = threading.Event()
        self.token = ""
        self.errors: list[str] = []

    def run(self) -> None:
        asyncio.run(self._run())

    async def _sign_in(self) -> None:
        password = await ensure_user(self.settings.dsn, "chaos")
        for base in self.base_urls * 3:
            try:
                self.token = await asyncio.to_thread(login, base, "chaos", password)
                return
            except OSError:
                await asyncio.sleep(0.5)

    async def _run(self) -> None:
        await self._sign_in()
        await asyncio.gather(*(self._client(c) for c in self.clients))

    async def _client(self, c: WsClient) -> None:
        from websockets.asyncio.client import connect as ws_connect
        from websockets.exceptions import InvalidStatus

        attempt = 0  # the first of its urls; the next one after each failure
        while not self.stop.is_set():
            try:
                async with ws_connect(
                    c.url(attempt), open_timeout=5, additional_headers=bearer(self.token)
                ) as ws:
                    c.connects += 1
                    while not self.stop.is_set():
                        if time.monotonic() < c.freeze_until:  # frozen: the socket stays open
                            await asyncio.sleep(0.2)
                            continue
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except TimeoutError:
                            continue
                        if msg["type"] == "snapshot":
                            c.snapshots += 1
                            if c.first_watermark is None:
                                c.first_watermark = msg["watermark"]
                            c.last = msg["watermark"]
                        elif msg["type"] == "event":
                            c.received.append(int(msg["id"]))
                            c.last = int(msg["id"])
            except InvalidStatus as exc:
                self.errors.append(f"{c.name}: {exc}")
                if exc.response.status_code in (401, 403):
                    await self._sign_in()
                attempt += 1
                await asyncio.sleep(0.3)
            except Exception as exc:  # noqa: BLE001 - the API went away: resume elsewhere
                if "4401" in str(exc):
                    await self._sign_in()
                attempt += 1
                await asyncio.sleep(0.3)


# ------------------------------------------------------------------------------- lag ---


class LagProbe(threading.Thread):
    """Every 0.25 s: seconds between now and the newest stored reading (None: database down)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="chaos-lag")
        self.settings, self.stop = settings, threading.Event()
        self.samples: list[tuple[float, float | None]] = []

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            lag: float | None = None
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.settings.dsn, autocommit=True, connect_timeout=2)
                row = conn.execute(
                    "SELECT extract(epoch FROM now() - max(time)) FROM traffic_observations "
                    "WHERE time > now() - interval '10 minutes'"
                ).fetchone()
                lag = float(row[0]) if row and row[0] is not None else None
            except psycopg.Error:
                conn = None
            self.samples.append((time.monotonic(), lag))
            time.sleep(0.25)
        if conn is not None:
            conn.close()

    def current(self) -> float | None:
        return self.samples[-1][1] if self.samples else None
