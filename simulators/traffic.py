"""Simulated traffic sensors over MQTT (``ioc simulate traffic``): the thin shell around
:class:`~simulators.traffic_engine.TrafficEngine`.

Every sensor is its own MQTT client (client id = sensor id, logged in with its own device
credentials when the link config carries the device secret) with a retained availability topic
and a Last Will, all driven from one thread by :class:`~simulators.mqtt_pool.ClientPool`;
``processes > 1`` shards the fleet over that many processes (sensor ``i`` goes to shard
``i % processes``). One extra client per process listens on ``ioc/v1/sim/control`` for
congestion and fault commands.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import structlog
from pydantic import ValidationError

from ioc.domain import wire
from ioc.domain.fleet import SensorSpec
from simulators.mqtt_pool import ClientPool, DeviceLink, LinkConfig, PoolStats
from simulators.traffic_engine import EngineConfig, GoOffline, GoOnline, Publish, TrafficEngine

log = structlog.get_logger("simulators.traffic")
STATS_EVERY_S = 10.0
STOP_GRACE_S = 5.0


class Stop(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class SimOptions:
    engine: EngineConfig = field(default_factory=EngineConfig)
    processes: int = 1
    connect_rate: float = 1000.0  # new connections per second, per process
    log_level: str = "INFO"
    log_format: str = "console"


def parse_command(payload: bytes) -> wire.SimControl | wire.SimFault:
    """A control message: a fault command when ``action`` names one, else congestion/clear."""
    try:
        action = json.loads(payload).get("action")
    except (ValueError, AttributeError):
        action = None
    if action in ("fault", "clear_faults"):
        cmd = wire.SimFault.model_validate_json(payload)
        if cmd.action == "fault" and cmd.kind is None:
            raise ValueError("a fault command needs a kind")
        return cmd
    return wire.SimControl.model_validate_json(payload)


def raise_fd_limit(needed: int) -> int:
    """One socket per sensor: lift the soft open-files limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("open-files limit too low for the fleet", limit=soft, needed=needed)
    return int(soft)


class TrafficSimulator:
    """One process's share of the fleet: the engine, one link per sensor, the control client."""

    def __init__(
        self,
        fleet: list[SensorSpec],
        options: SimOptions,
        link: LinkConfig,
        *,
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        self.engine = TrafficEngine(fleet, options.engine, shard=shard, shards=shards)
        self.pool = ClientPool(connect_rate=options.connect_rate)
        self.links = {
            i: DeviceLink(
                self.pool,
                fleet[i].id,
                wire.availability_topic(fleet[i].id),
                link.for_device(fleet[i].id),
            )
            for i in self.engine.owned
        }
        self.control_link = DeviceLink(
            self.pool,
            f"ioc-sim-control-{socket.gethostname()}-{os.getpid()}-{shard}",
            None,
            link,
            on_message=self._on_control,
            subscriptions=(wire.SIM_CONTROL,),
        )
        self.commands = 0

    @property
    def stats(self) -> PoolStats:
        return self.pool.stats

    def _on_control(self, msg: mqtt.MQTTMessage) -> None:
        try:
            cmd = parse_command(bytes(msg.payload))
            n = self.engine.control(cmd, time.time())
        except (ValidationError, ValueError) as exc:
            log.warning("bad control message ignored", error=str(exc).splitlines()[0][:200])
            return
        self.commands += 1
        log.info("control", **cmd.model_dump(exclude_none=True), sensors=n)

    def run(self, stop: Stop) -> PoolStats:
        """Publish until ``stop`` is set, then say goodbye for every sensor. Blocking."""
        raise_fd_limit(len(self.links) + 256)
        self.control_link.start()
        for link in self.links.values():
            link.start()
        self.engine.start(time.time())
        next_stats = time.monotonic() + STATS_EVERY_S
        last = (0, time.monotonic())
        try:
            while not stop.is_set():
                self.step(time.time())
                wait = self.engine.next_due() - time.time()
                self.pool.run_once(min(max(wait, 0.0), 0.05))
                if time.monotonic() >= next_stats:
                    last = self._log_stats(last)
                    next_stats += STATS_EVERY_S
        finally:
            self.close()
        return self.stats

    def step(self, now: float) -> None:
        for action in self.engine.advance(now):
            link = self.links[action.index]
            if isinstance(action, Publish):
                link.publish(action.topic, action.payload)
            elif isinstance(action, GoOffline):
                link.drop()
            elif isinstance(action, GoOnline):
                link.release()

    def close(self) -> None:
        links = [*self.links.values(), self.control_link]
        for link in links:
            link.close()
        if not self.pool.run_until(lambda: all(x.closed for x in links), STOP_GRACE_S):
            log.warning("some sensors did not say goodbye in time", open=self.pool.open_sockets())
        self.pool.close()

    def _log_stats(self, last: tuple[int, float]) -> tuple[int, float]:
        s, now = self.stats, time.monotonic()
        span = max(1e-6, now - last[1])
        log.info(
            "traffic simulator",
            online=s.online,
            sensors=len(self.links),
            published_per_s=round((s.published - last[0]) / span),
            buffered=s.buffered,
            dropped=s.dropped,
            connect_errors=s.connect_errors,
            skipped=self.engine.skipped,
            max_lag_s=round(self.engine.max_lag, 3),
        )
        self.engine.max_lag = 0.0
        return s.published, now


class _ParentWatch:
    """A shard stops when told to, on SIGTERM, or when its parent is gone."""

    def __init__(self, event: Any) -> None:
        self.event = event
        self.parent = os.getppid()
        self.terminated = False
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "terminated", True))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into the event

    def is_set(self) -> bool:
        return self.terminated or self.event.is_set() or os.getppid() != self.parent


def _shard_main(
    fleet: list[SensorSpec], options: SimOptions, link: LinkConfig, event: Any, shard: int
) -> None:
    from ioc import logs

    logs.configure(
        options.log_level,
        options.log_format,
        role=f"simulate-traffic-{shard}",
        secrets=(link.password, link.device_secret or ""),
    )
    watch = _ParentWatch(event)
    TrafficSimulator(fleet, options, link, shard=shard, shards=options.processes).run(watch)


def run(fleet: list[SensorSpec], options: SimOptions, link: LinkConfig, stop: Stop) -> None:
    """Run the whole fleet until ``stop`` is set: in this process, or sharded over
    ``options.processes`` spawned processes (spawned, not forked: nothing runs threads yet in
    a fresh interpreter)."""
    if options.processes <= 1:
        TrafficSimulator(fleet, options, link).run(stop)
        return
    ctx = multiprocessing.get_context("spawn")
    event = ctx.Event()
    procs = [
        ctx.Process(
            target=_shard_main,
            args=(fleet, options, link, event, k),
            name=f"traffic-shard-{k}",
            daemon=True,
        )
        for k in range(options.processes)
    ]
    for p in procs:
        p.start()
    try:
        while not stop.is_set():
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited with code {dead[0].exitcode}")
            time.sleep(0.2)
    finally:
        event.set()
        for p in procs:
            p.join(STOP_GRACE_S + 5)
            if p.is_alive():
                p.kill()
                p.join()
