"""``ioc replay FILE --speed N``: republish a recording with its relative timing, N times faster.

The whole file is validated first (one full pass); nothing is published unless every line is
right. Then it is streamed: message ``i`` goes out at ``start + t_i / N``.

Timestamps (``--shift-to-now``, the default): each observation's ``observed_at`` is moved so it
keeps its distance from the moment the recorder received it, with that moment mapped onto the
replay's clock: ``new = published_at + (observed_at - (started_at + t))``. A live reading stays
"just now", a store-and-forward burst stays late by as much as it was, a clock-skewed sensor
stays as far ahead. ``--keep-timestamps`` sends the bytes unchanged (the centre then treats
the readings as what they are: old, duplicates if already stored, or older than 7 days and
dead-lettered as ``clock_skew``). Payloads that are not a JSON object with a parseable
``observed_at`` (garbage) are always sent unchanged.

Simulator control messages (``ioc/v1/sim/control``) are recorded for the record but replayed
only with ``--with-control`` (replaying both a jam's readings and the command that caused it
would double it when a simulator runs). The camera fault timeline is applied to the camera
simulator when one answers (``--no-cameras`` to skip).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ioc.config import Settings
from ioc.domain import wire
from ioc.scenario import mqtt as tool_mqtt
from ioc.scenario.progress import Progress
from ioc.scenario.record import camera_control
from ioc.scenario.recording import CameraState, Info, Message, read, validate


@dataclass
class ReplayStats:
    published: int = 0
    skipped_control: int = 0
    camera_changes: int = 0
    loops: int = 0
    unacknowledged: int = 0
    seconds: float = 0.0


def shift_observed_at(payload: bytes, delta: timedelta) -> bytes:
    """The payload with ``observed_at`` moved by ``delta`` (same offset and precision style),
    or unchanged when it is not a JSON object carrying one."""
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return payload
    if not isinstance(obj, dict) or not isinstance(obj.get("observed_at"), str):
        return payload
    text = obj["observed_at"]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return payload
    if when.tzinfo is None:
        return payload
    moved = when + delta
    out = moved.isoformat(timespec="milliseconds")
    if text.endswith(("Z", "z")):
        out = moved.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    obj["observed_at"] = out
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class _Cameras:
    """Applies recorded fault states to the camera simulator: the difference from what it has."""

    def __init__(self, ctl: Any) -> None:
        self.ctl = ctl
        self.have: dict[int, set[str]] = {}

    def apply(self, state: CameraState) -> bool:
        want: set[str] = set(state.faults)
        have = self.have.get(state.camera)
        try:
            if have is None:
                have = set(next(
                    (c.get("faults") or []) for c in self.ctl.cameras() if c["camera"] == state.camera
                ))  # fmt: skip
            for fault in sorted(have - want):
                self.ctl.set_fault(state.camera, fault, False)
            for fault in sorted(want - have):
                self.ctl.set_fault(state.camera, fault, True)
        except (OSError, RuntimeError, StopIteration, KeyError, ValueError):
            return False
        self.have[state.camera] = want
        return True


def replay(
    settings: Settings,
    path: Path,
    *,
    speed: float = 1.0,
    shift: bool = True,
    loop: bool = False,
    with_control: bool = False,
    cameras: bool = True,
    camera_port: int | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    info: Info | None = None,
) -> ReplayStats:
    if speed <= 0:
        raise ValueError("speed must be > 0")
    info = info or validate(path)  # before the first publish: a bad file sends nothing
    stop = stop or threading.Event()
    progress = progress or Progress(sys.stderr)
    stats = ReplayStats()
    if not info.messages and not info.camera_states:
        return stats  # a header alone: nothing to send, not even in a loop
    cam = None
    if cameras and info.camera_states:
        ctl = camera_control(settings, camera_port)
        if ctl is None:
            progress.line(
                f"ioc: warning: the recording has {info.camera_states} camera fault changes but no"
                " camera simulator answers: they are skipped"
            )
        else:
            cam = _Cameras(ctl)
    client = tool_mqtt.connect(settings, "replay")
    pending: deque[mqtt.MQTTMessageInfo] = deque()
    total = info.messages + info.camera_states
    began = time.monotonic()
    try:
        while not stop.is_set():
            stats.loops += 1
            start_mono, start_wall = time.monotonic(), datetime.now(UTC)
            for k, line in enumerate(read(path), start=1):
                due = start_mono + line.t / speed
                while not stop.is_set() and (wait := due - time.monotonic()) > 0:
                    time.sleep(min(wait, 0.2))
                    _show(progress, stats, k, total, line.t, info, speed)
                if stop.is_set():
                    break
                if isinstance(line, CameraState):
                    if cam is not None and cam.apply(line):
                        stats.camera_changes += 1
                    continue
                _publish(client, line, info, speed, shift, with_control, start_wall, stats, pending)
                while pending and pending[0].is_published():
                    pending.popleft()
                _show(progress, stats, k, total, line.t, info, speed)
            if not loop:
                break
    finally:
        stats.unacknowledged = tool_mqtt.close(client, pending)
        stats.seconds = time.monotonic() - began
        progress.done()
    return stats


def _publish(
    client: mqtt.Client,
    line: Message,
    info: Info,
    speed: float,
    shift: bool,
    with_control: bool,
    start_wall: datetime,
    stats: ReplayStats,
    pending: deque[mqtt.MQTTMessageInfo],
) -> None:
    if line.topic == wire.SIM_CONTROL and not with_control:
        stats.skipped_control += 1
        return
    body = line.body()
    if shift and wire.device_id_from_topic(line.topic) is not None:
        received = info.header.started_at + timedelta(seconds=line.t)
        published = start_wall + timedelta(seconds=line.t / speed)
        body = shift_observed_at(body, published - received)
    msg = client.publish(line.topic, body, qos=min(line.qos, 1), retain=line.retain)
    if line.qos:
        pending.append(msg)
    stats.published += 1


def _show(
    progress: Progress, stats: ReplayStats, k: int, total: int, t: float, info: Info, speed: float
) -> None:
    share = k / total if total else 1.0
    loop = f" loop {stats.loops}," if stats.loops > 1 else ""
    progress.update(
        f"replay ×{speed:g}:{loop} {share:4.0%} {k:,}/{total:,} lines, recording at"
        f" {t:.0f}/{info.duration_s:.0f} s, {stats.published:,} published"
    )


def run_cli(
    settings: Settings,
    path: Path,
    *,
    speed: float,
    shift: bool,
    loop: bool,
    with_control: bool,
    cameras: bool,
) -> int:
    info = validate(path)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(info.topics.items()))
    print(
        f"{path}: {info.messages:,} messages ({kinds}), {info.camera_states} camera states,"
        f" {info.duration_s:.1f} s recorded at {info.header.started_at.isoformat()}",
        file=sys.stderr,
    )
    stats = replay(
        settings, path, speed=speed, shift=shift, loop=loop, with_control=with_control,
        cameras=cameras, stop=stop, info=info,
    )  # fmt: skip
    skipped = (
        f", {stats.skipped_control} control messages skipped (--with-control sends them)"
        if stats.skipped_control
        else ""
    )
    print(
        f"replayed {stats.published:,} messages and {stats.camera_changes} camera changes in"
        f" {stats.seconds:.1f} s ({stats.loops} pass{'es' if stats.loops > 1 else ''}){skipped}"
    )
    if stats.unacknowledged:
        print(f"ioc: error: {stats.unacknowledged} messages not acknowledged by the broker",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
