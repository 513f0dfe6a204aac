"""Simulated traffic sensors publishing over MQTT (QoS 1), seeded and deterministic.

Values follow a daily profile in local time (morning and evening peaks, quiet nights). The
simulator listens on ``ioc/v1/sim/control`` so tests, scenarios and ``ioc simulate congest`` can
cause congestion in an area or on given sensors.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from ioc.domain import wire
from ioc.domain.fleet import SensorSpec

log = structlog.get_logger("simulators.traffic")
LOCAL_TZ = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh has no DST


def rush_factor(local: datetime) -> float:
    """Share of free-flow speed at this local time: peaks around 07:30 and 17:30."""
    h = local.hour + local.minute / 60
    dip = 0.35 * math.exp(-((h - 7.5) ** 2) / 0.8) + 0.4 * math.exp(-((h - 17.5) ** 2) / 1.0)
    if local.weekday() >= 5:
        dip *= 0.5
    return 1.0 - dip


@dataclass
class Congestion:
    speed_kmh: float
    until: float


@dataclass
class TrafficSimulator:
    fleet: list[SensorSpec]
    seed: int
    interval_s: float = 2.0
    congestion: dict[str, Congestion] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._by_area: dict[str, list[str]] = {}
        for s in self.fleet:
            self._by_area.setdefault(s.area_id, []).append(s.id)

    def control(self, cmd: wire.SimControl, now: float) -> int:
        targets = list(cmd.device_ids or [])
        if cmd.area_id:
            targets += self._by_area.get(cmd.area_id, [])
        if cmd.action == "clear" and not targets:
            targets = list(self.congestion)
        with self._lock:
            for device_id in targets:
                if cmd.action == "congestion":
                    self.congestion[device_id] = Congestion(cmd.speed_kmh, now + cmd.duration_s)
                else:
                    self.congestion.pop(device_id, None)
        return len(targets)

    def readings(self, when: datetime, now: float) -> list[wire.TrafficObservation]:
        factor = rush_factor(when.astimezone(LOCAL_TZ))
        out = []
        with self._lock:
            jam = {k: v for k, v in self.congestion.items() if v.until > now}
            self.congestion = jam
        for s in self.fleet:
            seq = self.seq.get(s.id, 0) + 1
            self.seq[s.id] = seq
            noise = self._rng.gauss(0, 3)
            if s.id in jam:
                speed = max(0.0, jam[s.id].speed_kmh + noise / 2)
                occupancy = min(1.0, 0.75 + self._rng.random() * 0.2)
            else:
                speed = max(5.0, s.free_flow_kmh * factor + noise)
                occupancy = min(1.0, max(0.0, 0.08 + (1 - factor) * 0.6 + self._rng.gauss(0, 0.02)))
            flow_vph = s.capacity_vph * min(1.0, occupancy * 1.6)
            intensity = max(0, round(flow_vph * self.interval_s / 3600 + self._rng.random()))
            out.append(
                wire.TrafficObservation(
                    device_id=s.id,
                    seq=seq,
                    observed_at=when,
                    intensity=intensity,
                    average_speed=round(speed, 1),
                    occupancy=round(occupancy, 3),
                    interval_s=max(1, round(self.interval_s)),
                )
            )
        return out


def run(
    sim: TrafficSimulator,
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    stop: threading.Event,
    client_id: str = "ioc-sim-traffic",
) -> None:
    """Publish until ``stop`` is set. Blocking: run it in its own process or thread."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(200)

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("simulator connect refused", reason=str(rc))
            return
        c.subscribe(wire.SIM_CONTROL, qos=1)
        for s in sim.fleet:
            c.publish(wire.availability_topic(s.id), b"online", qos=1, retain=True)
        log.info("simulator connected", sensors=len(sim.fleet))

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            cmd = wire.SimControl.model_validate_json(msg.payload)
        except ValidationError as exc:
            log.warning("bad control message", error=str(exc.errors()[0]["msg"]))
            return
        n = sim.control(cmd, time.monotonic())
        log.info("control", action=cmd.action, area=cmd.area_id, sensors=n)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    try:
        next_tick = time.monotonic()
        while not stop.is_set():
            for obs in sim.readings(datetime.now(UTC), time.monotonic()):
                client.publish(
                    wire.observation_topic(obs.device_id),
                    obs.to_payload(),
                    qos=wire.QOS_OBSERVATION,
                )
            next_tick += sim.interval_s
            stop.wait(max(0.0, next_tick - time.monotonic()))
    finally:
        for s in sim.fleet:
            client.publish(wire.availability_topic(s.id), b"offline", qos=1, retain=True)
        client.disconnect()
        client.loop_stop()
