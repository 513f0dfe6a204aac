"""Which frames health decodes (``ingest.rtsp.sampling``): packets in, decisions out."""

from __future__ import annotations

import pytest

from ingest.rtsp.sampling import SamplePlan


def run(
    fps: float, gop_s: float | None, seconds: float, *, jitter: float = 0.0
) -> dict[str, float]:
    """Feed a stream of ``fps`` with a keyframe every ``gop_s`` (None: none marked) through a
    plan; the decoder gives a picture for every decoded packet."""
    plan = SamplePlan(1.0, started=0.0)
    decoded, samples = 0, []
    n = int(seconds * fps)
    per_gop = round(gop_s * fps) if gop_s else 0
    for i in range(n):
        now = i / fps + (jitter if i % 2 else -jitter)
        decode, sample = plan.packet(now, per_gop > 0 and i % per_gop == 0)
        decoded += decode
        if decode and sample:
            plan.sampled(now)
            samples.append(now)
    steady = [b - a for a, b in zip(samples, samples[1:], strict=False) if a >= 3]
    return {"decoded": decoded / n, "samples": len(samples), "max_gap": max(steady)}


def test_a_keyframe_a_second_decodes_only_the_keyframes() -> None:
    r = run(15, 1.0, 60, jitter=0.02)
    assert r["decoded"] < 0.1  # 1 in 15, plus the first group (its length is not known yet)
    assert r["max_gap"] <= 1.1 and r["samples"] >= 58


def test_frequent_keyframes_are_skipped_until_a_picture_is_due() -> None:
    r = run(25, 0.2, 30)
    assert r["decoded"] < 0.06 and r["max_gap"] <= 1.01


@pytest.mark.parametrize("gop_s", [2.0, 4.0])
def test_long_groups_are_decoded_only_up_to_the_last_picture_needed(gop_s: float) -> None:
    r = run(15, gop_s, 60)
    assert r["max_gap"] <= 1.01
    # The group's tail after its last picture is skipped (the first group is decoded whole:
    # its length is not known yet).
    assert r["decoded"] <= 1 - 1 / gop_s + 1 / 15 + gop_s / 60


def test_a_stream_that_marks_no_keyframe_is_decoded_whole_after_a_while() -> None:
    plan = SamplePlan(1.0, started=0.0)
    assert plan.packet(1.0, False) == (False, False)  # nothing to decode from yet
    assert plan.packet(4.0, False) == (True, True)
    plan.sampled(4.0)
    assert plan.packet(4.5, False) == (True, False)  # every frame decoded, one analysed a second
    assert plan.packet(5.0, False) == (True, True)


def test_nothing_is_decoded_before_the_first_keyframe() -> None:
    plan = SamplePlan(1.0, started=0.0)
    assert plan.packet(0.1, False) == (False, False)
    assert plan.packet(0.2, True) == (True, True)


def test_a_picture_the_decoder_held_back_is_taken_from_the_next_frame() -> None:
    plan = SamplePlan(1.0, started=0.0)
    for k in range(3):  # keyframes at 0, 1, 2: the group is learned
        decode, sample = plan.packet(float(k), True)
        if sample:
            plan.sampled(float(k))
    assert plan.packet(3.0, True) == (True, True)  # ...but no picture came out: not sampled
    assert plan.packet(3.1, False) == (True, True)
