"""The pure camera-health functions on synthetic frames (no stream, no database)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioc.domain import camera as c

TH = c.Thresholds()
W, H = c.ANALYSIS_W, c.ANALYSIS_H


def scene(seed: int = 1, width: int = W + 160) -> np.ndarray:
    """A street-like grey picture: blocks of many sizes plus fine texture, wider than a frame."""
    rng = np.random.default_rng(seed)
    img = np.full((H, width), 120.0)
    for _ in range(120):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, H))
        w, h = int(rng.integers(4, 60)), int(rng.integers(4, 50))
        img[y : y + h, x : x + w] = rng.uniform(20, 235)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def frame(img: np.ndarray, x: int = 0) -> np.ndarray:
    return np.ascontiguousarray(img[:, x : x + W])


def stats(img: np.ndarray) -> c.FrameStats:
    return c.frame_stats(np.ascontiguousarray(img, dtype=np.uint8))


def night(img: np.ndarray, contrast: float = 0.5, brightness: float = -25) -> np.ndarray:
    return np.clip(img.astype(np.float32) * contrast + brightness, 0, 255).astype(np.uint8)


def blurred(img: np.ndarray, k: int = 9) -> np.ndarray:
    return np.clip(c.box_blur(img, k), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def base() -> c.Baseline:
    img = scene()
    return c.learn_baseline([stats(frame(img)) for _ in range(10)], fps=15.0)


def test_frame_stats_refuses_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="320x180"):
        c.frame_stats(np.zeros((90, 160), np.uint8))


def test_black_picture_is_black_and_a_night_picture_is_not() -> None:
    black = c.check_black(stats(np.full((H, W), 3, np.uint8)), TH)
    assert black is not None and black.code == "black" and black.confidence > 0.9
    assert c.check_black(stats(night(frame(scene()), 0.4, -40)), TH) is None
    assert c.check_black(stats(frame(scene())), TH) is None


def test_blur_is_judged_against_the_cameras_own_baseline(base: c.Baseline) -> None:
    sharp = stats(frame(scene()))
    assert c.check_blur(sharp, base, TH) is None
    r = c.check_blur(stats(blurred(frame(scene()))), base, TH)
    assert r is not None and r.code == "blurred" and "normal" in r.detail
    assert c.check_blur(sharp, None, TH) is None  # no baseline yet: no verdict


def test_night_is_not_blur_nor_a_moved_camera(base: c.Baseline) -> None:
    dark = stats(night(frame(scene())))
    assert c.check_blur(dark, base, TH) is None
    assert c.check_moved(dark, base, TH) is None
    assert c.check_covered(dark, base, TH) is None


def test_a_covered_lens_is_tamper_with_or_without_a_baseline(base: c.Baseline) -> None:
    flat = stats(np.full((H, W), 70, np.uint8))
    assert (r := c.check_covered(flat, None, TH)) is not None and r.code == "covered"
    assert c.check_covered(flat, base, TH) is not None
    partly = frame(scene()).copy()
    partly[:, : int(W * 0.8)] = 60  # a hand over most of the lens, the rest still visible
    r = c.check_covered(stats(partly), base, TH)
    assert r is not None and "%" in r.detail
    assert c.check_covered(stats(blurred(frame(scene()))), base, TH) is None


def test_a_moved_camera_is_told_by_its_reference_picture(base: c.Baseline) -> None:
    img = scene()
    assert c.check_moved(stats(frame(img, 0)), base, TH) is None
    r = c.check_moved(stats(frame(img, 120)), base, TH)
    assert r is not None and r.code == "moved" and "shifted" in r.detail
    assert c.check_moved(stats(frame(scene(seed=2))), base, TH) is not None
    # A small wobble is not a move.
    assert c.check_moved(stats(frame(img, 3)), base, TH) is None


def test_estimate_shift_finds_a_translation() -> None:
    a = stats(frame(scene(), 0)).coarse
    b = np.roll(a, (2, -5), axis=(0, 1))
    assert c.estimate_shift(a, b) == (5, -2) or c.estimate_shift(a, b) == (-5, 2)


def test_frozen_needs_a_full_window_of_still_samples() -> None:
    still = [(t / 3, 0.0) for t in range(12)]  # 4 s of identical samples, 3 a second
    assert c.check_frozen(still, now=11 / 3, th=TH) is not None
    assert c.check_frozen(still[:4], now=1.0, th=TH) is None  # not long enough yet
    noisy = [(t, 0.01 if i % 5 == 0 else m) for i, (t, m) in enumerate(still)]  # keyframes
    assert c.check_frozen(noisy, now=11 / 3, th=TH) is not None
    moving = [(t, m if i % 2 else 0.02) for i, (t, m) in enumerate(still)]
    assert c.check_frozen(moving, now=11 / 3, th=TH) is None


def test_motion_counts_changed_pixels() -> None:
    a = np.zeros((90, 160), np.uint8)
    b = a.copy()
    b[:9, :16] = 200
    assert c.motion(a, b, 12) == pytest.approx(0.01)
    assert c.motion(a, a + 5, 12) == 0.0  # compression noise is not motion


def test_fps_is_measured_over_a_window_and_judged_against_the_expected_rate() -> None:
    times = [i / 15 for i in range(150)]
    assert c.measure_fps(times, now=10.0, window_s=3.0) == pytest.approx(15, abs=0.4)
    assert c.check_fps(15.0, 15.0, TH) is None
    slow = c.check_fps(3.0, 15.0, TH)
    assert slow is not None and slow.code == "low_fps" and slow.confidence > 0.8
    assert c.check_fps(3.0, None, TH) is None


def test_baseline_survives_a_round_trip_through_its_record(base: c.Baseline) -> None:
    meta, blob = base.to_record()
    again = c.Baseline.from_record(meta, blob)
    assert again.sharpness == base.sharpness and again.fps == base.fps
    np.testing.assert_allclose(again.reference, base.reference)
    np.testing.assert_allclose(again.blocks, base.blocks, atol=1e-3)


def test_status_follows_priority_and_reasons_are_ordered() -> None:
    blur = c.Reason("blurred", "", 0.6)
    frozen = c.Reason("frozen", "", 0.9)
    assert c.status_of([]) == c.OK
    assert c.status_of([blur, frozen]) == c.FROZEN
    assert c.order([blur, frozen])[0] is frozen
    assert c.status_of([c.Reason("auth_failed", "", 1.0), blur]) == c.OFFLINE


def test_one_bad_frame_does_not_change_the_status() -> None:
    d = c.Debouncer(TH)
    assert d.offer([], 0.0) is None and d.offer([], 2.0) is not None  # unknown -> ok
    bad = [c.Reason("black", "", 1.0)]
    assert d.offer(bad, 3.0) is None
    assert d.offer([], 3.3) is None  # the black frame was alone
    assert d.offer(bad, 4.0) is None and d.offer(bad, 5.9) is None
    change = d.offer(bad, 6.0)
    assert change is not None and (change.previous, change.status) == (c.OK, c.BLACK)
    assert d.offer([], 7.0) is None and d.offer([], 9.0) is not None  # recovery has grace too


def test_confidence_grows_with_the_distance_past_the_threshold() -> None:
    mild = c.check_black(stats(np.full((H, W), 20, np.uint8)), TH)
    deep = c.check_black(stats(np.zeros((H, W), np.uint8)), TH)
    assert mild is not None and deep is not None
    assert 0.5 <= mild.confidence < deep.confidence <= 1.0


@settings(max_examples=25, deadline=None)
@given(contrast=st.floats(0.45, 1.3), brightness=st.floats(-30, 30))
def test_sharpness_and_scene_match_ignore_brightness_and_contrast(
    contrast: float, brightness: float
) -> None:
    img = frame(scene(seed=3))
    a, b = stats(img), stats(night(img, contrast, brightness))
    assert b.sharpness / a.sharpness == pytest.approx(1.0, abs=0.15)
    assert c.zncc(a.coarse, b.coarse) > 0.95


@given(attempt=st.integers(0, 40), jitter=st.floats(0, 0.999))
def test_backoff_is_capped_and_never_below_half_its_nominal_value(
    attempt: int, jitter: float
) -> None:
    d = c.backoff_delay(attempt, base=0.5, cap=30.0, jitter=jitter)
    nominal = min(30.0, 0.5 * 2**attempt)
    assert nominal / 2 <= d <= nominal <= 30.0
