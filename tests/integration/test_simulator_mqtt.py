"""The traffic simulator against the real Mosquitto: one MQTT identity per sensor, retained
availability, the Last Will, store-and-forward bursts, control commands, and a 2,000-sensor fleet."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ioc.config import Settings
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import make_fleet
from ioc.mqtt_logins import sync_local_broker
from ioc.services import LocalServices
from simulators.mqtt_pool import LinkConfig
from simulators.traffic import SimOptions, TrafficSimulator
from simulators.traffic_engine import EngineConfig
from tests.conftest import env_for

pytestmark = pytest.mark.integration
AVAILABILITY = wire.TRAFFIC_AVAILABILITY_FILTER
OBSERVATIONS = wire.TRAFFIC_OBSERVATION_FILTER


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Listener:
    """A plain subscriber (its own paho thread) recording (arrival, topic, payload, retained).

    paho's threaded loop uses select(), which fails on file descriptors above 1024: in a process
    that holds thousands of sensor sockets, connect the listener *before* the fleet.
    """

    def __init__(self, settings: Settings, *topics: str, persistent: bool = False) -> None:
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.topics: list[str] = []
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-listen-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,  # persistent: the broker keeps what we miss
        )
        c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
        c.on_message = lambda _c, _u, m: self.messages.append(
            (time.monotonic(), m.topic, bytes(m.payload), bool(m.retain))
        )
        c.on_connect = lambda _c, _u, _f, _rc, _p: self.subscribe()
        c.connect(settings.mqtt_host, settings.mqtt_port)
        c.loop_start()
        self.client = c
        self.subscribe(*topics)

    def subscribe(self, *topics: str) -> None:
        self.topics += topics
        for topic in topics or self.topics:
            self.client.subscribe(topic, qos=1)

    def availability(self) -> dict[str, str]:
        """Last availability per device id."""
        return {
            t.split("/")[3]: p.decode()
            for _, t, p, _ in self.messages
            if t.endswith("availability")
        }

    def close(self) -> None:
        if self.topics:  # a persistent session must not keep queueing after the test
            self.client.unsubscribe(self.topics)
            time.sleep(0.2)
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def listening(settings: Settings, *topics: str) -> Iterator[Listener]:
    listener = Listener(settings, *topics)
    try:
        yield listener
    finally:
        listener.close()


def forget_retained(settings: Settings, ids: list[str]) -> None:
    """Leave the broker as we found it: no retained availability for our test sensors."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    infos = [c.publish(wire.availability_topic(i), b"", qos=1, retain=True) for i in ids]
    for info in infos:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


@contextmanager
def simulator(
    settings: Settings, sensors: int, *, interval_s: float = 1.0, forget: bool = True
) -> Iterator[TrafficSimulator]:
    fleet = make_fleet(load_geography(settings.areas_file), sensors, settings.sim_seed)
    # Each sensor logs in as itself (as `ioc simulate traffic` does): register their logins,
    # as `ioc seed` does for the devices it registers (the session database has only 60).
    assert sync_local_broker(settings, [s.id for s in fleet]) is not None
    sim = TrafficSimulator(
        fleet,
        SimOptions(engine=EngineConfig(interval_s=interval_s), connect_rate=2000),
        LinkConfig(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_sim_user,
            settings.mqtt_sim_password,
            device_secret=settings.mqtt_device_secret,
        ),
    )
    stop = threading.Event()
    runner = threading.Thread(target=sim.run, args=(stop,), name="sim", daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: sim.stats.online == sensors + 1, 30), sim.stats
        yield sim
    finally:
        stop.set()
        runner.join(20)
        assert not runner.is_alive(), "the simulator did not stop"
        if forget:
            forget_retained(settings, [s.id for s in fleet])


def send(settings: Settings, cmd: wire.SimControl | wire.SimFault) -> None:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    c.publish(wire.SIM_CONTROL, cmd.model_dump_json(), qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def test_each_sensor_is_its_own_client_with_retained_availability(services: Settings) -> None:
    ids = [f"ts-{i:05d}" for i in range(1, 21)]
    try:
        with simulator(services, 20, forget=False) as sim:
            with listening(services, AVAILABILITY) as fresh:
                assert wait_until(lambda: len(fresh.availability()) >= 20, 10)
                assert {d: fresh.availability()[d] for d in ids} == dict.fromkeys(ids, "online")
                assert all(retained for *_, retained in fresh.messages)
            with listening(services, OBSERVATIONS) as obs:
                assert wait_until(lambda: len(obs.messages) >= 60, 10)
            senders = {t.split("/")[3] for _, t, _, _ in obs.messages}
            assert senders == set(ids)
            log = LocalServices(services).mqtt_log_path.read_text(errors="replace")
            assert all(f" as {d} " in log for d in ids)  # one broker session per sensor id
            assert all(f"u'{d}')" in log for d in ids)  # each logged in with its own login
            assert sim.pool.open_sockets() == 21
        with listening(services, AVAILABILITY) as after:  # an orderly stop says goodbye
            assert wait_until(lambda: len(after.availability()) >= 20, 10)
            assert {d: after.availability()[d] for d in ids} == dict.fromkeys(ids, "offline")
    finally:
        forget_retained(services, ids)


def test_a_connection_lost_abruptly_publishes_the_last_will(services: Settings) -> None:
    with simulator(services, 5) as sim, listening(services, AVAILABILITY) as live:
        assert wait_until(lambda: live.availability().get("ts-00002") == "online", 10)
        sock = sim.links[1].client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # the network drops: no DISCONNECT is sent

        def states() -> list[str]:
            return [
                p.decode() for _, t, p, _ in live.messages if t.endswith("ts-00002/availability")
            ]

        assert wait_until(lambda: states()[-2:] == ["offline", "online"], 15), states()
        assert sim.stats.disconnects >= 1  # and the sensor came back by itself


def test_store_and_forward_replays_with_original_timestamps(services: Settings) -> None:
    device = "ts-00003"
    with simulator(services, 5) as sim, listening(services, f"ioc/v1/traffic/{device}/#") as rx:
        time.sleep(1.5)
        send(
            services,
            wire.SimFault(
                action="fault", kind="store_and_forward", device_ids=[device], duration_s=4
            ),
        )
        assert wait_until(lambda: rx.availability().get(device) == "offline", 5)
        with listening(services, wire.availability_topic(device)) as fresh:
            assert wait_until(lambda: bool(fresh.messages), 5)
            assert fresh.messages[0][2:] == (b"offline", True)  # the Will is retained
        assert wait_until(lambda: rx.availability().get(device) == "online", 10)
        time.sleep(1.5)
        assert sim.stats.buffered >= 3
    arrivals = [(at, json.loads(p)) for at, t, p, _ in rx.messages if t.endswith("observation")]
    seqs = [o["seq"] for _, o in arrivals]
    assert sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1))  # nothing lost
    back = next(at for at, t, p, _ in rx.messages if p == b"online" and at > arrivals[0][0])
    replayed = [(at, o) for at, o in arrivals if at >= back and at - back < 0.3]
    assert len(replayed) >= 3
    stamps = [wire.TrafficObservation.model_validate(o).observed_at for _, o in replayed]
    assert (max(stamps) - min(stamps)).total_seconds() >= 2  # measured over seconds...
    assert max(at for at, _ in replayed) - min(at for at, _ in replayed) < 0.3  # ...sent at once


def test_congestion_by_area_over_the_control_topic(services: Settings) -> None:
    with simulator(services, 40) as sim, listening(services, OBSERVATIONS) as rx:
        area = {sim.engine.fleet[i].id for i in sim.engine.by_area["dong-xoai"]}
        send(services, wire.SimControl(action="congestion", area_id="dong-xoai", duration_s=60))
        started = time.monotonic()
        time.sleep(3)
    late = [json.loads(p) for at, _, p, _ in rx.messages if at > started + 1.2]
    jammed = [o["average_speed"] for o in late if o["device_id"] in area]
    free = [o["average_speed"] for o in late if o["device_id"] not in area]
    assert jammed and all(4 <= v <= 12 for v in jammed)
    assert min(free) > 15


def test_fault_command_from_the_cli(services: Settings) -> None:
    with listening(services, wire.SIM_CONTROL) as rx:
        time.sleep(0.3)
        argv = [sys.executable, "-m", "ioc.cli", "simulate", "fault", "--kind", "stuck"]
        done = subprocess.run(
            [*argv, "--device", "ts-00007", "--duration", "30"],
            env=env_for(services),
            capture_output=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: bool(rx.messages), 5)
    cmd = wire.SimFault.model_validate_json(rx.messages[0][2])
    assert (cmd.action, cmd.kind, cmd.device_ids, cmd.duration_s) == (
        "fault",
        "stuck",
        ["ts-00007"],
        30,
    )


def test_two_thousand_sensors_each_with_their_own_connection(services: Settings) -> None:
    n = 2000
    fresh, rx = Listener(services), Listener(services)  # low fds: see Listener
    started = time.monotonic()
    try:
        with simulator(services, n, interval_s=2.0) as sim:
            connected_in = time.monotonic() - started
            assert sim.pool.open_sockets() == n + 1
            fresh.subscribe(AVAILABILITY)  # a new subscriber gets every retained state
            assert wait_until(lambda: len(fresh.availability()) >= n, 15)
            assert set(fresh.availability().values()) == {"online"}
            rx.subscribe(OBSERVATIONS)
            time.sleep(1)
            counted = len(rx.messages)
            time.sleep(4)
            rate = (len(rx.messages) - counted) / 4
            assert 0.85 * n / 2 < rate < 1.15 * n / 2, rate  # every sensor, every 2 s
            assert sim.engine.skipped == 0
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 15
    finally:
        fresh.close()
        rx.close()
    print(f"\n{n} sensors connected in {connected_in:.1f} s; {rate:.0f} readings/s")


def test_cli_simulator_sharded_congests_on_command_and_stops_cleanly(services: Settings) -> None:
    ioc = [sys.executable, "-m", "ioc.cli", "simulate"]
    ids = [f"ts-{i:05d}" for i in range(1, 31)]
    assert sync_local_broker(services, ids) is not None  # what `ioc seed` does
    with listening(services, OBSERVATIONS) as rx:
        proc = subprocess.Popen(
            [*ioc, "traffic", "--sensors", "30", "--interval", "1", "--processes", "2"],
            env=env_for(services),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:

            def senders() -> set[str]:
                return {json.loads(p)["device_id"] for _, _, p, _ in rx.messages}

            assert wait_until(lambda: senders() == set(ids), 20), sorted(senders())
            congest = [*ioc, "congest", "--area", "binh-long", "--duration", "60"]
            subprocess.run(congest, env=env_for(services), check=True, timeout=30)
            sent = time.monotonic()
            time.sleep(3)
            shards = psutil.Process(proc.pid).children()
            assert len(shards) >= 2
        finally:
            proc.terminate()
            code = proc.wait(15)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert not [p for p in shards if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    late = [json.loads(p) for at, _, p, _ in rx.messages if at > sent + 1.2]
    area = {
        s.id
        for s in make_fleet(load_geography(services.areas_file), 30, 58)
        if s.area_id == "binh-long"
    }
    jammed = [o["average_speed"] for o in late if o["device_id"] in area]
    assert jammed and max(jammed) < 12
    with listening(services, AVAILABILITY) as after:
        assert wait_until(lambda: len(after.availability()) >= 30, 10)
        assert {after.availability()[d] for d in ids} == {"offline"}
    forget_retained(services, ids)


def test_readings_taken_while_the_broker_is_down_arrive_after_it_returns(
    services: Settings,
) -> None:
    broker = LocalServices(services).mosquitto
    rx = Listener(services, OBSERVATIONS, persistent=True)
    try:
        with simulator(services, 10) as sim:
            time.sleep(1.5)
            broker.stop()
            down = time.time()
            time.sleep(3)
            broker.start()
            up = time.time()
            assert wait_until(lambda: sim.stats.online == 11 and not sim.links[0].outbox, 20)
            time.sleep(1.5)
            assert sim.stats.buffered >= 20 and sim.stats.dropped == 0
    finally:
        rx.close()
    by_device: dict[str, list[wire.TrafficObservation]] = {}
    for _, _, p, _ in rx.messages:
        obs = wire.TrafficObservation.model_validate_json(p)
        by_device.setdefault(obs.device_id, []).append(obs)
    assert len(by_device) == 10
    for readings in by_device.values():
        seqs = {o.seq for o in readings}
        assert seqs == set(range(min(seqs), max(seqs) + 1))  # no gap across the outage
        assert any(down + 0.5 < o.observed_at.timestamp() < up - 0.5 for o in readings)
