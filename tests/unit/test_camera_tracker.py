"""The per-camera tracker: connection events, frames and samples in, debounced status out."""

from __future__ import annotations

import numpy as np

from ingest.rtsp.tracker import HealthTracker
from ioc.domain import camera as c
from tests.unit.test_camera_health import frame, night, scene, stats

FPS = 15
DT = 1 / FPS


class Feed:
    """Drives a tracker like a capture would: frames at FPS, a sample every 5th frame."""

    def __init__(self, tracker: HealthTracker) -> None:
        self.t = 0.0
        self.tracker = tracker
        self.n = 0
        self.changes: list[c.Transition] = []

    def run(self, seconds: float, picture, *, fps: float = FPS) -> None:  # type: ignore[no-untyped-def]
        end = self.t + seconds
        while self.t < end:
            self.t += 1 / fps
            self.n += 1
            self.tracker.on_frame(self.t)
            if self.n % 5 == 0 or fps < FPS:
                self.tracker.on_sample(self.t, stats(picture(self.t)))
            if self.n % 7 == 0 and (ch := self.tracker.update(self.t)) is not None:
                self.changes.append(ch)

    def idle(self, seconds: float) -> None:
        end = self.t + seconds
        while self.t < end:
            self.t += 0.5
            if (ch := self.tracker.update(self.t)) is not None:
                self.changes.append(ch)


def street(t: float, x0: int = 0) -> np.ndarray:
    """The scene (seen from ``x0``) with a 'car' moving across it."""
    img = frame(scene(), x0).copy()
    x = int(40 + 60 * t) % 280
    img[120:140, x : x + 30] = 250
    return img


def healthy_feed() -> Feed:
    f = Feed(HealthTracker(now=0.0))
    f.tracker.on_connected(0.0)
    f.run(8, street)
    assert f.tracker.status == c.OK and f.tracker.baseline is not None
    assert f.tracker.baseline.fps is not None and abs(f.tracker.baseline.fps - FPS) < 1
    return f


def test_a_healthy_camera_becomes_ok_and_learns_its_baseline() -> None:
    f = healthy_feed()
    assert [ch.status for ch in f.changes] == [c.OK]
    assert f.tracker.baseline_learned
    m = f.tracker.metrics(f.t)
    assert m["baseline"] == "learned" and m["fps"] > 14 and m["sharpness"] > 0.8


def test_frozen_picture_is_detected_and_recovery_noticed() -> None:
    f = healthy_feed()
    still = street(f.t)
    start = f.t
    f.run(6, lambda _t: still)
    frozen = [ch for ch in f.changes if ch.status == c.FROZEN]
    assert frozen and frozen[0].at - start < 5 and frozen[0].reasons[0].code == "frozen"
    f.run(4, street)
    assert f.changes[-1].status == c.OK


def test_blur_cover_black_and_move_each_have_their_reason() -> None:
    cases = {
        c.BLURRED: lambda t: np.clip(c.box_blur(street(t), 9), 0, 255).astype(np.uint8),
        c.TAMPERED: lambda t: np.full_like(street(t), 65),
        c.BLACK: lambda t: np.zeros_like(street(t)),
        c.MOVED: lambda t: street(t, 130),
    }
    codes = {c.BLURRED: "blurred", c.TAMPERED: "covered", c.BLACK: "black", c.MOVED: "moved"}
    for status, picture in cases.items():
        f = healthy_feed()
        start = f.t
        f.run(5, picture)
        assert f.changes[-1].status == status, status
        assert f.changes[-1].reasons[0].code == codes[status]
        assert f.changes[-1].at - start < 4
        f.run(4, street)
        assert f.changes[-1].status == c.OK, status


def test_night_falls_without_an_alarm() -> None:
    f = healthy_feed()
    # Dusk over 10 s: contrast and brightness fall together.
    f.run(10, lambda t: night(street(t), 1 - 0.05 * (t - 8), -3 * (t - 8)))
    f.run(5, lambda t: night(street(t), 0.5, -30))
    assert [ch.status for ch in f.changes] == [c.OK]


def test_low_frame_rate_is_noticed() -> None:
    f = healthy_feed()
    f.run(6, street, fps=3)
    assert f.changes[-1].status == c.LOW_FPS
    assert "expected 15" in f.changes[-1].reasons[0].detail


def test_offline_reason_comes_from_the_capture_and_waits_its_grace() -> None:
    f = healthy_feed()
    f.tracker.on_disconnected(f.t, c.Reason("stream_lost", "closed", 0.9), was_streaming=True)
    f.tracker.on_failure(f.t + 0.1, c.Reason("auth_failed", "401", 1.0))
    assert f.tracker.update(f.t + 0.5) is None
    assert f.tracker.update(f.t + 1.5) is None
    change = f.tracker.update(f.t + 2.5)
    assert change is not None and change.status == c.OFFLINE
    assert change.reasons[0].code == "auth_failed"


def test_repeated_drops_make_a_camera_unstable_until_it_stays_up() -> None:
    f = healthy_feed()
    for _ in range(3):
        f.tracker.on_disconnected(f.t, c.Reason("stream_lost", "", 0.9), was_streaming=True)
        f.idle(0.5)
        f.tracker.on_connected(f.t)
        f.run(1.0, street)
    assert f.changes[-1].status == c.UNSTABLE
    assert f.changes[-1].reasons[0].code == "stream_drops"
    f.run(f.tracker.th.stable_s + 3, street)
    assert f.changes[-1].status == c.OK


def test_no_verdict_before_the_first_attempt_ends() -> None:
    t = HealthTracker(now=0.0)
    assert t.update(5.0) is None and t.status == "unknown"
    t.on_failure(5.0, c.Reason("not_found", "404", 1.0))
    assert t.update(5.1) is None
    change = t.update(7.2)
    assert change is not None and change.reasons[0].code == "not_found"


def test_a_stored_baseline_is_used_at_once() -> None:
    learned = healthy_feed().tracker.baseline
    f = Feed(HealthTracker(now=0.0, baseline=learned))
    f.tracker.on_connected(0.0)
    f.run(7, lambda t: street(t, 130))  # already moved when this worker took over
    assert f.changes[-1].status == c.MOVED
