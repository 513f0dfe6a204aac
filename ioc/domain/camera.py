"""Camera health: pure functions on downscaled grey frames, and a tracker that debounces them.

The capture threads (``ingest/rtsp``) decode a stream, downscale a frame a few times a second to
``ANALYSIS_SIZE`` grey and hand it here. Nothing here does I/O or reads a clock: time is passed
in, so every verdict can be replayed in a unit test on synthetic frames.

Why these measures:
- black: nearly every pixel dark. A night picture is darker but keeps its structure.
- frozen: consecutive samples differ in (almost) no pixel for a few seconds while frames arrive.
- blur: Laplacian energy divided by contrast, against the camera's own learned baseline. The
  ratio does not move when brightness and contrast do (night), so night is not "blur".
- covered (tamper): most blocks that had texture in the baseline are flat now.
- moved (scene shift): zero-mean normalised cross-correlation of a coarse, band-passed picture
  against the reference picture. Band-passed, because the broad layout (sky on top, road below)
  is the same after a camera is knocked sideways, and only the structure within it moves; like
  the blur ratio, the score ignores brightness and contrast.
- fps: frames counted over a window against the expected rate (configured or learned).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Gray = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]

ANALYSIS_W, ANALYSIS_H = 320, 180  # what the worker downsizes each sampled frame to
SMALL_W, SMALL_H = 160, 90  # texture blocks
COARSE_W, COARSE_H = 80, 45  # motion and the reference picture
GRID_ROWS, GRID_COLS = 6, 8
BAND_BOX = 9  # coarse pixels: structure smaller than this is what "the scene" is compared on
DARK_LEVEL = 40

# Statuses, most important first: a camera shows the first that applies.
OK, OFFLINE, UNSTABLE = "ok", "offline", "unstable"
BLACK, TAMPERED, FROZEN, MOVED, BLURRED, LOW_FPS = (
    "black", "tampered", "frozen", "moved", "blurred", "low_fps",
)  # fmt: skip
PRIORITY = (OFFLINE, UNSTABLE, BLACK, TAMPERED, FROZEN, MOVED, BLURRED, LOW_FPS)
SEVERITY = {
    OK: "info", OFFLINE: "major", UNSTABLE: "minor", BLACK: "major", TAMPERED: "critical",
    FROZEN: "major", MOVED: "major", BLURRED: "minor", LOW_FPS: "minor",
}  # fmt: skip
# Reason code -> status. Offline reasons come from the capture (see ingest/rtsp/probe.py).
OFFLINE_REASONS = (
    "unreachable", "auth_failed", "not_found", "no_video", "stream_lost", "rtsp_error",
    "open_failed", "capture_error",
)  # fmt: skip
STATUS_OF = {
    "black": BLACK, "covered": TAMPERED, "frozen": FROZEN, "moved": MOVED, "blurred": BLURRED,
    "low_fps": LOW_FPS, "stream_drops": UNSTABLE, **{r: OFFLINE for r in OFFLINE_REASONS},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    detail: str
    confidence: float  # 0.5 at the threshold, 1.0 far beyond it

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, "confidence": round(self.confidence, 2)}


@dataclass(frozen=True)
class Thresholds:
    black_mean: float = 22.0
    black_dark_fraction: float = 0.97
    flat_std: float = 4.0  # a picture (or block) this uniform shows nothing
    # A coarse pixel "changed" by more than this many grey levels. Samples are mostly keyframes
    # (ingest/rtsp/sampling.py): the same still picture encoded twice differs by up to ~4 % of
    # coarse pixels at 8 levels (the encoder's quality settles after motion stops) but < 0.5 %
    # at 16, while one car crossing changes ~1.5 % by far more than 16, by night too.
    motion_delta: int = 16
    frozen_motion: float = 0.008  # fraction of changed coarse pixels below which a pair is still
    frozen_window_s: float = 3.0
    frozen_still_share: float = 0.6  # of the sample pairs in the window (keyframes are noisy)
    blur_ratio: float = 0.45  # sharpness below this share of the baseline is "blurred"
    textured_block_std: float = 8.0
    covered_block_ratio: float = 0.2  # a textured block whose std fell below this share
    covered_fraction: float = 0.6  # ...in this share of the textured blocks: "covered"
    moved_zncc: float = 0.5
    low_fps_ratio: float = 0.6
    fps_window_s: float = 3.0
    grace_s: float = 2.0  # a problem must last this long before the status changes
    frozen_grace_s: float = 0.5  # frozen already waited frozen_window_s
    recover_s: float = 2.0  # and a recovery this long
    offline_grace_s: float = 2.0
    stale_s: float = 5.0  # connected but no frame for this long: no video
    learn_s: float = 5.0  # baseline: at least this long...
    learn_samples: int = 10  # ...and this many good samples
    drop_window_s: float = 30.0
    drops_unstable: int = 2  # this many dropped sessions in the window...
    stable_s: float = 10.0  # ...unless the stream has been up this long since the last one


@dataclass(frozen=True, slots=True)
class FrameStats:
    mean: float
    std: float
    dark_fraction: float
    sharpness: float
    blocks: Floats  # GRID_ROWS x GRID_COLS standard deviations
    small: Gray  # COARSE_H x COARSE_W means, for motion: coarse enough that the noise of a
    # re-encoded keyframe averages out while a moving car still changes dozens of pixels
    coarse: Floats  # COARSE_H x COARSE_W band-passed, zero mean and unit variance (or zeros)


def frame_stats(gray: Gray) -> FrameStats:
    """Everything the checks need from one ANALYSIS_SIZE grey frame, computed once."""
    if gray.shape != (ANALYSIS_H, ANALYSIS_W):
        raise ValueError(f"expected a {ANALYSIS_W}x{ANALYSIS_H} grey frame, got {gray.shape}")
    f = gray.astype(np.float32)
    mean, std = float(f.mean()), float(f.std())
    dark = float(np.count_nonzero(gray < DARK_LEVEL)) / gray.size
    c = f[1:-1, 1:-1]
    lap = 4 * c - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:]
    sharpness = float(np.abs(lap).mean()) / (std + 1.0)
    small = _half(f)
    bh, bw = SMALL_H // GRID_ROWS, SMALL_W // GRID_COLS
    blocks = small.reshape(GRID_ROWS, bh, GRID_COLS, bw).std(axis=(1, 3)).astype(np.float32)
    coarse = _half(small)
    return FrameStats(
        mean=mean,
        std=std,
        dark_fraction=dark,
        sharpness=sharpness,
        blocks=blocks,
        small=np.rint(coarse).astype(np.uint8),
        coarse=_normalise(coarse - box_blur(coarse, BAND_BOX)),
    )


def _half(a: Floats) -> Floats:
    """2x2 means (strided sums: several times faster than reshape().mean())."""
    out: Floats = (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) * 0.25
    return out


def box_blur(a: npt.NDArray[Any], k: int) -> Floats:
    """Mean over a k x k window (edges repeated), by summed-area table."""
    p = k // 2
    padded = np.pad(a.astype(np.float64), p, mode="edge")
    sat = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    out: npt.NDArray[np.float64] = sat[k:, k:] - sat[:-k, k:] - sat[k:, :-k] + sat[:-k, :-k]
    return (out / (k * k)).astype(np.float32)


def _normalise(a: npt.NDArray[Any]) -> Floats:
    a = a.astype(np.float32)
    sd = float(a.std())
    if sd < 1e-3:
        return np.zeros_like(a, dtype=np.float32)
    return ((a - float(a.mean())) / sd).astype(np.float32)


def _confidence(value: float, threshold: float, extreme: float) -> float:
    """0.5 when ``value`` is at ``threshold``, 1.0 at ``extreme`` (either direction)."""
    if extreme == threshold:
        return 1.0
    frac = (value - threshold) / (extreme - threshold)
    return 0.5 + 0.5 * min(1.0, max(0.0, frac))


def motion(prev: Gray, cur: Gray, delta: int) -> float:
    """Fraction of pixels that changed by more than ``delta`` grey levels."""
    diff = np.abs(cur.astype(np.int16) - prev.astype(np.int16))
    return float(np.count_nonzero(diff > delta)) / diff.size


def zncc(a: Floats, b: Floats) -> float:
    """Correlation of two normalised pictures: 1 the same, ~0 unrelated."""
    return float(np.mean(a * b))


def estimate_shift(ref: Floats, cur: Floats) -> tuple[int, int]:
    """(dx, dy) in coarse pixels by phase correlation: how far the view moved."""
    fa, fb = np.fft.fft2(ref), np.fft.fft2(cur)
    cross = fa * np.conj(fb)
    cross /= np.abs(cross) + 1e-9
    corr = np.abs(np.fft.ifft2(cross))
    dy, dx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    h, w = corr.shape
    return (int(dx) - w if dx > w // 2 else int(dx)), (int(dy) - h if dy > h // 2 else int(dy))


@dataclass(frozen=True)
class Baseline:
    """What this camera looks like when healthy: learned, then kept (and stored)."""

    sharpness: float
    blocks: Floats
    reference: Floats
    fps: float | None
    samples: int

    def to_record(self) -> tuple[dict[str, Any], bytes]:
        meta = {
            "sharpness": self.sharpness,
            "blocks": [round(float(v), 3) for v in self.blocks.ravel()],
            "fps": self.fps,
            "samples": self.samples,
            "shape": list(self.reference.shape),
        }
        return meta, self.reference.astype("<f4").tobytes()

    @classmethod
    def from_record(cls, meta: dict[str, Any], reference: bytes) -> Baseline:
        shape = tuple(int(v) for v in meta["shape"])
        if shape != (COARSE_H, COARSE_W):
            raise ValueError(f"baseline reference has shape {shape}")
        return cls(
            sharpness=float(meta["sharpness"]),
            blocks=np.array(meta["blocks"], np.float32).reshape(GRID_ROWS, GRID_COLS),
            reference=np.frombuffer(reference, "<f4").astype(np.float32).reshape(shape),
            fps=None if meta.get("fps") is None else float(meta["fps"]),
            samples=int(meta.get("samples", 0)),
        )


def learn_baseline(samples: Sequence[FrameStats], fps: float | None) -> Baseline:
    """Medians over healthy samples (robust to the odd passing car)."""
    if not samples:
        raise ValueError("no samples to learn from")
    return Baseline(
        sharpness=float(np.median([s.sharpness for s in samples])),
        blocks=np.median(np.stack([s.blocks for s in samples]), axis=0).astype(np.float32),
        reference=_normalise(np.mean(np.stack([s.coarse for s in samples]), axis=0)),
        fps=fps,
        samples=len(samples),
    )


# ------------------------------------------------------------------------------ checks ---


def check_black(s: FrameStats, th: Thresholds) -> Reason | None:
    if s.mean < th.black_mean and s.dark_fraction >= th.black_dark_fraction:
        return Reason(
            "black", f"picture is black (mean level {s.mean:.0f}/255)",
            _confidence(s.mean, th.black_mean, 0.0),
        )  # fmt: skip
    return None


def check_covered(s: FrameStats, base: Baseline | None, th: Thresholds) -> Reason | None:
    """Tamper/occlusion: the lens covered, sprayed or blocked (not black: that is its own)."""
    if s.std < th.flat_std:
        return Reason(
            "covered", f"picture is uniform (contrast {s.std:.1f})",
            _confidence(s.std, th.flat_std, 0.0),
        )  # fmt: skip
    if base is None:
        return None
    textured = base.blocks >= th.textured_block_std
    n = int(np.count_nonzero(textured))
    if n == 0:
        return None
    limit = np.maximum(th.flat_std, th.covered_block_ratio * base.blocks)
    flat = textured & (s.blocks < limit)
    share = int(np.count_nonzero(flat)) / n
    if share >= th.covered_fraction:
        return Reason(
            "covered", f"{share:.0%} of the picture lost its detail (covered or blocked)",
            _confidence(share, th.covered_fraction, 1.0),
        )  # fmt: skip
    return None


def check_frozen(
    motions: Sequence[tuple[float, float]], now: float, th: Thresholds
) -> Reason | None:
    """``motions``: (time, changed fraction against the previous sample), oldest first.

    The pairs of the last ``frozen_window_s`` must cover most of it: a pair reaches back to the
    pair before it, so one picture a second (three pairs in three seconds) is enough."""
    recent = [m for t, m in motions if now - t <= th.frozen_window_s]
    if len(recent) < 2:
        return None
    first = len(motions) - len(recent)
    covered_from = motions[first - 1][0] if first > 0 else motions[first][0]
    if now - covered_from < th.frozen_window_s * 0.8:
        return None
    still = sum(1 for m in recent if m < th.frozen_motion) / len(recent)
    if still >= th.frozen_still_share:
        return Reason(
            "frozen",
            f"picture has not changed for {th.frozen_window_s:.0f} s while frames arrive",
            _confidence(still, th.frozen_still_share, 1.0),
        )
    return None


def check_blur(s: FrameStats, base: Baseline | None, th: Thresholds) -> Reason | None:
    if base is None or base.sharpness <= 0:
        return None
    ratio = s.sharpness / base.sharpness
    if ratio < th.blur_ratio:
        return Reason(
            "blurred", f"sharpness at {ratio:.0%} of this camera's normal",
            _confidence(ratio, th.blur_ratio, th.blur_ratio / 4),
        )  # fmt: skip
    return None


def check_moved(s: FrameStats, base: Baseline | None, th: Thresholds) -> Reason | None:
    if base is None:
        return None
    score = zncc(s.coarse, base.reference)
    if score < th.moved_zncc:
        dx, dy = estimate_shift(base.reference, s.coarse)
        where = f"; view shifted about {dx * 100 // COARSE_W:+d}% across, {dy * 100 // COARSE_H:+d}% up/down"
        return Reason(
            "moved", f"scene matches its reference at {score:.2f}{where if dx or dy else ''}",
            _confidence(score, th.moved_zncc, 0.0),
        )  # fmt: skip
    return None


def measure_fps(times: Sequence[float], now: float, window_s: float) -> float:
    """Frames per second over the last ``window_s`` (``times``: arrival times, oldest first)."""
    n = 0
    for t in reversed(times):
        if t <= now - window_s:
            break
        n += t <= now
    return n / window_s


def check_fps(fps: float, expected: float | None, th: Thresholds) -> Reason | None:
    if not expected or expected <= 0:
        return None
    ratio = fps / expected
    if ratio < th.low_fps_ratio:
        return Reason(
            "low_fps", f"{fps:.1f} frames/s, expected {expected:.0f}",
            _confidence(ratio, th.low_fps_ratio, 0.0),
        )  # fmt: skip
    return None


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Capped exponential backoff; ``jitter`` in [0, 1) is the caller's random draw.

    Full jitter over the upper half: a fleet of cameras that failed together does not reconnect
    in lockstep, and no delay is shorter than half the nominal one.
    """
    nominal = min(cap, base * math.pow(2.0, max(0, attempt)))
    return nominal * (0.5 + 0.5 * jitter)


def status_of(reasons: Sequence[Reason]) -> str:
    if not reasons:
        return OK
    return min((STATUS_OF.get(r.code, OFFLINE) for r in reasons), key=PRIORITY.index)


def order(reasons: list[Reason]) -> list[Reason]:
    return sorted(reasons, key=lambda r: PRIORITY.index(STATUS_OF.get(r.code, OFFLINE)))


@dataclass(frozen=True)
class Transition:
    previous: str
    status: str
    reasons: tuple[Reason, ...]
    at: float


@dataclass
class Debouncer:
    """A status changes only after the new one has held for its grace period."""

    th: Thresholds
    status: str = "unknown"
    reasons: tuple[Reason, ...] = ()
    pending: tuple[str, float] | None = None
    history: list[Transition] = field(default_factory=list)

    def grace(self, status: str) -> float:
        if status == OK:
            return self.th.recover_s
        if status == OFFLINE:
            return self.th.offline_grace_s
        if status == UNSTABLE:
            return 0.0  # the count of drops is its own debounce
        if status == FROZEN:
            return self.th.frozen_grace_s
        return self.th.grace_s

    def offer(self, reasons: Sequence[Reason], now: float) -> Transition | None:
        candidate = status_of(reasons)
        if candidate == self.status:
            self.pending = None
            self.reasons = tuple(reasons)
            return None
        if self.pending is None or self.pending[0] != candidate:
            self.pending = (candidate, now)
        if now - self.pending[1] < self.grace(candidate):
            return None
        change = Transition(self.status, candidate, tuple(reasons), now)
        self.status, self.reasons, self.pending = candidate, tuple(reasons), None
        return change
