"""``ioc record``: capture a running centre's MQTT traffic and camera fault timeline.

Subscribes (MQTT v5, as the simulator login, retain-as-published so retained messages stay
marked as such) to every sensor's observations and availability and to the simulator control
channel, and polls the camera simulator's control endpoint once a second for each camera's
faults (the state, not the calls that changed it: faults set by any tool are caught). Messages
cross from paho's thread to the writer through one bounded queue; an overflow is counted and
reported, never silent.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from ioc.config import Settings
from ioc.domain import wire
from ioc.scenario import mqtt as tool_mqtt
from ioc.scenario.progress import Progress
from ioc.scenario.recording import Header, Writer

TOPICS = (wire.TRAFFIC_OBSERVATION_FILTER, wire.TRAFFIC_AVAILABILITY_FILTER, wire.SIM_CONTROL)
QUEUE_MAX = 100_000
CAMERA_POLL_S = 1.0


@dataclass
class RecordStats:
    messages: int = 0
    camera_changes: int = 0
    dropped: int = 0
    seconds: float = 0.0
    cameras: bool = False


def camera_control(settings: Settings, port: int | None = None) -> Any:
    """The camera simulator's control client when one answers, else None."""
    from ingest.rtsp.config import camera_settings
    from simulators.cameras.control import SimulatorControl

    ctl = SimulatorControl(port or camera_settings(settings).control_port, timeout=2.0)
    try:
        ctl.health()
    except (OSError, RuntimeError, ValueError, KeyError):
        return None
    return ctl


def record(
    settings: Settings,
    out: Path,
    *,
    duration_s: float | None = None,
    cameras: bool = True,
    camera_port: int | None = None,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
    progress: Progress | None = None,
) -> RecordStats:
    """Record until ``duration_s`` has passed or ``stop`` is set (Ctrl-C / SIGTERM when run
    from the command line); ``ready`` is set once the broker has acknowledged the
    subscriptions."""
    stop = stop or threading.Event()
    progress = progress or Progress(sys.stderr)
    inbox: queue.Queue[tuple[float, str, bytes, int, bool]] = queue.Queue(QUEUE_MAX)
    stats = RecordStats()
    ctl = camera_control(settings, camera_port) if cameras else None
    stats.cameras = ctl is not None

    def on_message(msg: mqtt.MQTTMessage) -> None:  # paho's thread: never block here
        try:
            inbox.put_nowait((time.monotonic(), msg.topic, bytes(msg.payload), msg.qos, msg.retain))
        except queue.Full:
            stats.dropped += 1

    started = datetime.now(UTC)
    t0 = time.monotonic()
    header = Header(
        format="ioc-recording",
        version=1,
        started_at=started,
        broker=f"{settings.mqtt_host}:{settings.mqtt_port}",
        topics=list(TOPICS),
        cameras=ctl.base if ctl is not None else None,
    )
    writer = Writer(out, header)
    opts = SubscribeOptions(qos=1, retainAsPublished=True)
    try:
        client = tool_mqtt.connect(
            settings, "record", on_message=on_message, subscribe=[(t, opts) for t in TOPICS]
        )
    except BaseException:
        writer.close()
        out.unlink(missing_ok=True)
        raise
    if ready is not None:
        ready.set()
    faults: dict[int, list[str]] = {}
    next_poll = t0
    deadline = None if duration_s is None else t0 + duration_s
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                at, topic, payload, qos, retain = inbox.get(timeout=0.1)
                writer.message(max(at - t0, 0.0), topic, payload, qos, retain)
                while True:  # drain what queued meanwhile without waking up per message
                    at, topic, payload, qos, retain = inbox.get_nowait()
                    writer.message(max(at - t0, 0.0), topic, payload, qos, retain)
            except queue.Empty:
                pass
            now = time.monotonic()
            if ctl is not None and now >= next_poll:
                next_poll = now + CAMERA_POLL_S
                _poll_cameras(ctl, writer, faults, now - t0)
            progress.update(
                f"recording: {writer.messages:,} messages, {writer.camera_changes} camera changes,"
                f" {now - t0:.0f} s" + (f", {stats.dropped} DROPPED" if stats.dropped else "")
            )
    finally:
        tool_mqtt.close(client, flush_s=0)
        while True:
            try:
                at, topic, payload, qos, retain = inbox.get_nowait()
            except queue.Empty:
                break
            writer.message(max(at - t0, 0.0), topic, payload, qos, retain)
        writer.close()
        progress.done()
    stats.messages, stats.camera_changes = writer.messages, writer.camera_changes
    stats.seconds = time.monotonic() - t0
    return stats


def _poll_cameras(ctl: Any, writer: Writer, faults: dict[int, list[str]], t: float) -> None:
    try:
        cams = ctl.cameras()
    except (OSError, RuntimeError, ValueError, KeyError):
        return  # the simulator restarted or is busy: the next poll catches up
    for cam in cams:
        now = sorted(cam.get("faults") or [])
        if faults.get(cam["camera"]) != now:
            faults[cam["camera"]] = now
            writer.camera(t, int(cam["camera"]), now)


def run_cli(settings: Settings, out: Path, duration_s: float | None, cameras: bool) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stats = record(settings, out, duration_s=duration_s, cameras=cameras, stop=stop)
    cams = (
        f", {stats.camera_changes} camera fault changes"
        if stats.cameras
        else " (no camera simulator answered: no camera timeline)"
    )
    print(f"recorded {stats.messages:,} messages in {stats.seconds:.1f} s{cams} to {out}")
    if stats.dropped:
        print(
            f"ioc: warning: {stats.dropped} messages were dropped: the writer fell behind",
            file=sys.stderr,
        )
        return 1
    return 0
