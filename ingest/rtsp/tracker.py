"""One camera's health over time: connection events, frame arrivals and analysed samples in,
a debounced status with its reasons out.

Pure like ``ioc.domain.camera`` (no I/O, time is passed in), but stateful; it is not
thread-safe: the capture that owns it guards every call with its lock.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ioc.domain.camera import (
    OK,
    Baseline,
    Debouncer,
    FrameStats,
    Reason,
    Thresholds,
    Transition,
    check_black,
    check_blur,
    check_covered,
    check_fps,
    check_frozen,
    check_moved,
    learn_baseline,
    measure_fps,
    motion,
    order,
    zncc,
)


class HealthTracker:
    def __init__(
        self,
        *,
        now: float,
        thresholds: Thresholds | None = None,
        expected_fps: float | None = None,
        baseline: Baseline | None = None,
    ) -> None:
        self.th = thresholds or Thresholds()
        self.expected_fps = expected_fps
        self.baseline = baseline
        self.baseline_learned = False  # set when learned here; the owner stores it, then clears
        self._learning: list[FrameStats] = []
        self._learn_from: float | None = None
        self._frames: deque[float] = deque(maxlen=4096)
        self._motions: deque[tuple[float, float]] = deque(maxlen=256)
        self._last: FrameStats | None = None
        self._last_sample_at: float | None = None
        self.last_frame_at: float | None = None
        self.connected = False
        self._since = now  # when ``connected`` last changed
        self._offline = Reason("no_video", "not connected yet", 0.5)
        self._tried = False  # has any connection attempt finished?
        self._drops: deque[float] = deque(maxlen=64)
        self.debouncer = Debouncer(self.th)

    # ------------------------------------------------------------------------ inputs ---
    def on_connected(self, now: float) -> None:
        self.connected, self._since, self._tried = True, now, True
        self._frames.clear()
        self._motions.clear()
        self._last = self._last_sample_at = None
        self._learning.clear()
        self._learn_from = None

    def on_disconnected(self, now: float, reason: Reason, *, was_streaming: bool) -> None:
        if self.connected and was_streaming:
            self._drops.append(now)
        self.connected, self._since, self._offline = False, now, reason
        self._tried = True

    def on_failure(self, now: float, reason: Reason) -> None:
        """An attempt to connect failed; ``reason`` says why."""
        if self.connected:
            self.connected, self._since = False, now
        self._offline = reason
        self._tried = True

    def on_frame(self, now: float) -> None:
        self.on_frames([now])

    def on_frames(self, times: list[float]) -> None:
        """Arrival times of frames since the last call, oldest first."""
        if not times:
            return
        self._frames.extend(times)
        self.last_frame_at = times[-1]
        horizon = times[-1] - 2 * self.th.fps_window_s
        while self._frames and self._frames[0] < horizon:
            self._frames.popleft()

    def on_sample(self, now: float, stats: FrameStats) -> None:
        blank = check_black(stats, self.th) or check_covered(stats, self.baseline, self.th)
        if blank is not None:
            # A blank picture never moves; those pairs must not make it "frozen" once it is back.
            self._motions.clear()
        elif self._last is not None:
            self._motions.append((now, motion(self._last.small, stats.small, self.th.motion_delta)))
        self._last, self._last_sample_at = stats, now
        if self.baseline is None:
            self._learn(now, stats)

    def _learn(self, now: float, stats: FrameStats) -> None:
        th = self.th
        still = check_frozen(self._motions, now, th) is not None
        if check_black(stats, th) or stats.std < 2 * th.flat_std or still:
            return  # learn only from a picture that looks alive
        if self._learn_from is None:
            self._learn_from = now
        self._learning.append(stats)
        enough = len(self._learning) >= th.learn_samples and now - self._learn_from >= th.learn_s
        if enough and now - self._since >= th.fps_window_s:
            fps = measure_fps(self._frames, now, th.fps_window_s)
            self.baseline = learn_baseline(self._learning, fps)
            self.baseline_learned = True
            self._learning = []

    # ----------------------------------------------------------------------- verdict ---
    def fps(self, now: float) -> float | None:
        if not self.connected or now - self._since < self.th.fps_window_s:
            return None
        # Arrivals come in batches a few times a second: count up to the last one we know of,
        # unless it is so old that the silence itself is the news.
        last = self.last_frame_at
        end = last if last is not None and 0 <= now - last < 1.0 else now
        return measure_fps(self._frames, end, self.th.fps_window_s)

    def expected(self) -> float | None:
        if self.expected_fps:
            return self.expected_fps
        return self.baseline.fps if self.baseline is not None else None

    def _unstable(self, now: float) -> Reason | None:
        th = self.th
        recent = [t for t in self._drops if now - t <= th.drop_window_s]
        if len(recent) >= th.drops_unstable and now - recent[-1] < th.stable_s:
            return Reason(
                "stream_drops",
                f"the stream dropped {len(recent)} times in {th.drop_window_s:.0f} s",
                min(1.0, 0.5 + 0.5 * (len(recent) - th.drops_unstable) / th.drops_unstable),
            )
        return None

    def reasons(self, now: float) -> list[Reason]:
        th = self.th
        unstable = self._unstable(now)
        if not self.connected:
            if unstable is not None and now - self._since < th.stable_s:
                return [unstable]
            return [self._offline]
        found: list[Reason] = [unstable] if unstable else []
        no_frame = self.last_frame_at is None or now - self.last_frame_at > th.stale_s
        if no_frame and now - self._since > th.stale_s:
            found.append(Reason("no_video", "connected but no frame arrives", 0.75))
        s = self._last
        fresh = self._last_sample_at is not None and now - self._last_sample_at <= th.stale_s
        if s is not None and fresh:
            found += self._picture(s, now)
        fps = self.fps(now)
        if fps is not None:
            slow = check_fps(fps, self.expected(), th)
            if slow is not None:
                found.append(slow)
        return order(found)

    def _picture(self, s: FrameStats, now: float) -> list[Reason]:
        th, base = self.th, self.baseline
        black = check_black(s, th)
        if black is not None:
            return [black]  # also flat, still and unsharp: say only what matters
        covered = check_covered(s, base, th)
        if covered is not None:
            return [covered]
        checks = (check_frozen(self._motions, now, th), check_moved(s, base, th))
        return [r for r in (*checks, check_blur(s, base, th)) if r is not None]

    def update(self, now: float) -> Transition | None:
        """Offer the current verdict to the debouncer; a Transition when the status changed."""
        if self.debouncer.status == "unknown":
            if self.connected and now - self._since < self.th.frozen_window_s:
                return None  # too early to call a new stream healthy
            if not self.connected and not self._tried:
                return None  # the first attempt is still under way
        return self.debouncer.offer(self.reasons(now), now)

    @property
    def status(self) -> str:
        return self.debouncer.status

    def metrics(self, now: float) -> dict[str, Any]:
        """Figures for the health row and device state (JSON-able)."""
        s, base = self._last, self.baseline
        fresh = s is not None and self.connected
        out: dict[str, Any] = {
            "connected": self.connected,
            "fps": self.fps(now),
            "expected_fps": self.expected(),
            "baseline": "learned" if base is not None else "learning",
            "drops": sum(1 for t in self._drops if now - t <= self.th.drop_window_s),
        }
        if fresh and s is not None:
            out["brightness"] = round(s.mean, 1)
            out["contrast"] = round(s.std, 1)
            if base is not None and base.sharpness > 0:
                out["sharpness"] = round(s.sharpness / base.sharpness, 3)
                out["scene_match"] = round(zncc(s.coarse, base.reference), 3)
        return out

    def is_ok(self) -> bool:
        return self.debouncer.status == OK
