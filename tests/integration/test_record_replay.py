"""Record and replay against the real Mosquitto and the real camera simulator: a round trip
keeps topics, order, bytes, the retained flag and the relative timing (at N times the speed),
moves the observation timestamps to now, replays the camera fault timeline, and skips the
simulator commands; a malformed recording is refused with file:line:reason and sends nothing."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ioc.config import Settings
from ioc.domain import wire
from ioc.scenario.record import record
from ioc.scenario.recording import Message, read, validate
from ioc.scenario.replay import replay
from simulators.cameras.control import CameraSimulator, SimulatorConfig
from tests.conftest import env_for, free_port

pytestmark = pytest.mark.integration
DEV = f"rr-{uuid.uuid4().hex[:6]}"  # devices of this test only: nobody else publishes as them


class Listener:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.got: list[tuple[float, str, bytes, bool]] = []
        subscribed = threading.Event()
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
        c.on_message = lambda _c, _u, m: self.got.append(
            (time.time(), m.topic, bytes(m.payload), bool(m.retain))
        )
        c.on_subscribe = lambda *_: subscribed.set()
        c.connect(settings.mqtt_host, settings.mqtt_port)
        c.loop_start()
        c.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        time.sleep(0.5)  # retained messages of earlier tests arrive now: not ours to judge
        self.got.clear()
        self.client = c

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ioc(settings: Settings, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", *argv],
        env=env_for(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def publisher(settings: Settings) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    return c


@pytest.fixture(scope="module")
def cameras(services: Settings) -> Iterator[CameraSimulator]:
    cfg = SimulatorConfig(
        port=free_port(), control_port=free_port(), cameras=1, width=160, height=90, fps=2,
        password="rr-cam-secret",
    )  # fmt: skip
    with CameraSimulator(cfg, services.state_dir) as sim:
        yield sim


def observation(seq: int) -> bytes:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {"v": 1, "device_id": f"{DEV}-1", "seq": seq, "observed_at": stamp, "intensity": 3,
         "average_speed": 41.5, "occupancy": 0.2, "interval_s": 1}
    ).encode()  # fmt: skip


def test_record_then_replay_round_trip(
    services: Settings, cameras: CameraSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "rec.jsonl.gz"
    availability = wire.availability_topic(f"{DEV}-1")
    stop, ready = threading.Event(), threading.Event()
    port = cameras.config.control_port
    rec = threading.Thread(
        target=record,
        args=(services, out),
        kwargs={"camera_port": port, "stop": stop, "ready": ready},
    )
    rec.start()
    pub = publisher(services)
    try:
        assert ready.wait(20), "the recorder did not subscribe"
        infos = [pub.publish(availability, b"online", qos=1, retain=True)]
        for seq in range(5):
            time.sleep(0.4)
            infos.append(pub.publish(wire.observation_topic(f"{DEV}-1"), observation(seq), qos=1))
        cameras.control.set_fault(1, "covered", True)
        infos.append(pub.publish(wire.observation_topic(f"{DEV}-2"), b"\xff\xfe\x00garbage", qos=1))
        infos.append(pub.publish(wire.SIM_CONTROL, b'{"action": "clear", "device_ids": []}', qos=1))
        for info in infos:
            info.wait_for_publish(10)
        time.sleep(1.5)  # the camera poll (1 s) sees the fault
    finally:
        stop.set()
        rec.join(20)
    recorded = [x for x in read(out) if not isinstance(x, Message) or DEV in x.topic]
    info = validate(out)
    assert info.header.cameras == cameras.control.base
    mine = [x for x in recorded if isinstance(x, Message)]
    assert [m.topic.split("/")[-1] for m in mine] == ["availability"] + ["observation"] * 6
    assert mine[0].retain and mine[0].body() == b"online"
    assert mine[-1].payload_b64 is not None and mine[-1].body() == b"\xff\xfe\x00garbage"
    controls = [x for x in read(out) if isinstance(x, Message) and x.topic == wire.SIM_CONTROL]
    assert controls and controls[-1].body() == b'{"action": "clear", "device_ids": []}'
    cams = [(x.camera, x.faults) for x in recorded if not isinstance(x, Message)]
    assert cams == [(1, []), (1, ["covered"])]
    span = mine[5].t - mine[1].t
    assert span == pytest.approx(1.6, abs=0.4)

    # Replay at 4x into a clean slate: no retained state, the camera healthy again.
    pub.publish(availability, b"", qos=1, retain=True).wait_for_publish(10)
    cameras.control.clear()
    listener = Listener(services, "ioc/v1/#")
    try:
        env = env_for(services, IOC_RTSP_CONTROL_PORT=str(port))
        done = subprocess.run(
            [sys.executable, "-m", "ioc.cli", "replay", str(out), "--speed", "4"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "replay ×4" in done.stderr and "control messages skipped" in done.stdout
        time.sleep(0.5)
    finally:
        listener.close()
    got = [g for g in listener.got if DEV in g[1] or g[1] == wire.SIM_CONTROL]
    assert [g[1] for g in got] == [m.topic for m in mine]  # same order, no control command
    assert got[-1][2] == b"\xff\xfe\x00garbage"
    for arrived, _, payload, _ in got[1:6]:
        stamp = datetime.fromisoformat(json.loads(payload)["observed_at"])
        assert abs(stamp.timestamp() - arrived) < 1.5  # shifted onto the replay's clock
        assert json.loads(payload)["observed_at"].endswith("Z")
    assert got[5][0] - got[1][0] == pytest.approx(span / 4, abs=0.25)
    assert cameras.control.cameras()[0]["faults"] == ["covered"]  # the timeline was replayed
    retained: list[bytes] = []  # a new subscriber gets the state the replay left retained
    c = publisher(services)
    c.on_message = lambda _c, _u, m: retained.append(bytes(m.payload))
    c.subscribe(availability, qos=1)
    deadline = time.monotonic() + 5
    while not retained and time.monotonic() < deadline:
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()
    assert retained == [b"online"]

    # --keep-timestamps sends the bytes as recorded.
    listener = Listener(services, f"ioc/v1/traffic/{DEV}-1/observation")
    try:
        replay(services, out, speed=20, shift=False, cameras=False)
        time.sleep(0.3)
    finally:
        listener.close()
    assert [g[2] for g in listener.got] == [m.body() for m in mine[1:6]]
    pub.publish(availability, b"", qos=1, retain=True).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()


def test_record_command_writes_a_valid_file(services: Settings, tmp_path: Path) -> None:
    out = tmp_path / "short.gz"
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "record", "--out", str(out), "--duration", "1"],
        env=env_for(services, IOC_RTSP_CONTROL_PORT=str(free_port())),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no camera simulator answered" in done.stdout
    assert validate(out).header.broker == f"{services.mqtt_host}:{services.mqtt_port}"


def test_a_malformed_recording_publishes_nothing(services: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    lines = [
        {"format": "ioc-recording", "version": 1, "started_at": "2026-11-25T02:00:00Z"},
        {"t": 0.0, "topic": wire.observation_topic(f"{DEV}-9"), "payload": "first"},
        {"t": 0.1, "topic": wire.SIM_CONTROL, "payload": '{"action": "clear"}'},
        {"t": 0.2, "topic": wire.observation_topic(f"{DEV}-9"), "payload": "third"},
        {"t": 0.3, "topic": wire.observation_topic(f"{DEV}-9"), "payload_b64": "not base64!"},
    ]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(x) + "\n" for x in lines))
    truncated = tmp_path / "cut.jsonl.gz"
    body = "".join(json.dumps(x) + "\n" for x in lines[:4] * 50).encode()
    truncated.write_bytes(gzip.compress(body)[:200])
    listener = Listener(services, "ioc/#")
    try:
        procs = [
            ioc(services, "replay", str(p), "--speed", "100", "--with-control")
            for p in (path, truncated)
        ]
        (bad_rc, bad_err), (cut_rc, cut_err) = [(p.wait(60), p.communicate()[1]) for p in procs]
        time.sleep(0.5)
    finally:
        listener.close()
    assert bad_rc == 2
    assert f"ioc: error: {path}:5: payload_b64 is not valid base64" in bad_err
    assert "nothing was published" in bad_err
    assert cut_rc == 2 and f"{truncated}:" in cut_err and "truncated" in cut_err
    assert listener.got == []
