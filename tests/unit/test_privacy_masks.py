"""Privacy masks: rasterising polygons, painting them out of a thumbnail, reading the masks file
and the privacy settings (no camera, no database)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from ingest.rtsp.capture import CameraCapture
from ingest.rtsp.config import DEFAULT_MASKS_FILE, camera_settings
from ingest.rtsp.tracker import HealthTracker
from ioc.config import Settings
from ioc.domain.camera import ANALYSIS_H, ANALYSIS_W
from ioc.domain.privacy import (
    PrivacyMasks,
    apply_mask,
    image_mask,
    masked_share,
    polygon_area,
    rasterise,
)
from ioc.privacy.masks import MaskFileError, load_masks, parse_masks
from ioc.rollups.config import RollupSettings
from ioc.rollups.retention import policies

W, H = ANALYSIS_W, ANALYSIS_H
TOP_LEFT = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5))


def test_a_rectangle_covers_its_pixels_plus_at_most_one_around() -> None:
    mask = rasterise([TOP_LEFT], W, H)
    assert mask.shape == (H, W) and mask.dtype == np.bool_
    assert mask[:90, :160].all()  # the whole quarter
    assert mask[:91, :161].all()  # and its one-pixel margin
    assert not mask[92:, :].any() and not mask[:, 162:].any()
    assert masked_share(mask) == pytest.approx(0.25, abs=0.01)


def test_a_mask_fits_every_resolution() -> None:
    for w, h in ((320, 180), (640, 360), (1920, 1080), (704, 576)):
        assert masked_share(rasterise([TOP_LEFT], w, h)) == pytest.approx(0.25, abs=0.012)


def test_a_self_crossing_outline_masks_everything_it_encloses() -> None:
    # A five-pointed star drawn in one stroke: its centre pentagon is enclosed twice (non-zero
    # winding), which an even-odd fill would leave visible.
    import math

    star = [
        (0.5 + 0.4 * math.sin(k * 4 * math.pi / 5), 0.5 - 0.4 * math.cos(k * 4 * math.pi / 5))
        for k in range(5)
    ]
    mask = rasterise([star], W, H)
    assert mask[H // 2 - 3 : H // 2 + 3, W // 2 - 3 : W // 2 + 3].all()


def test_a_polygon_thinner_than_a_pixel_still_masks_where_it_is() -> None:
    sliver = ((0.500, 0.500), (0.501, 0.500), (0.501, 0.501))
    mask = rasterise([sliver], W, H)
    assert mask[90, 160] and 1 <= mask.sum() <= 9


def test_several_polygons_are_a_union_and_none_is_nothing() -> None:
    right = ((0.75, 0.5), (1.0, 0.5), (1.0, 1.0), (0.75, 1.0))
    both = rasterise([TOP_LEFT, right], W, H)
    assert both[10, 10] and both[170, 310] and not both[170, 10]
    assert not rasterise([], W, H).any()
    with pytest.raises(ValueError):
        rasterise([TOP_LEFT], 0, 180)


def test_apply_mask_blackens_the_mask_only_and_leaves_its_input_alone() -> None:
    rng = np.random.default_rng(5)
    colour = rng.integers(30, 255, size=(H, W, 3), dtype=np.uint8)
    mask = rasterise([TOP_LEFT], W, H)
    out = apply_mask(colour, mask)
    assert (out[mask] == 0).all()
    assert (out[~mask] == colour[~mask]).all()
    assert (colour > 0).all(), "the input is not changed"
    grey = rng.integers(30, 255, size=(H, W), dtype=np.uint8)
    assert (apply_mask(grey, mask)[mask] == 0).all()
    whole = rasterise([((0, 0), (1, 0), (1, 1), (0, 1))], W, H)
    assert not apply_mask(colour, whole).any()
    with pytest.raises(ValueError, match="does not fit"):
        apply_mask(colour, rasterise([TOP_LEFT], 640, 360))


def test_masking_costs_no_measurable_cpu() -> None:
    """Rasterised once per camera and size; applied only when a thumbnail is taken (every 5 s by
    default). Bounds are loose (the machine is shared); docs/privacy.md has measured figures."""
    polys = [TOP_LEFT, ((0.6, 0.1), (0.9, 0.1), (0.95, 0.6), (0.7, 0.7), (0.55, 0.4))]
    t0 = time.perf_counter()
    mask = rasterise(polys, W, H)
    raster_s = time.perf_counter() - t0
    frame = np.full((H, W, 3), 128, dtype=np.uint8)
    t0 = time.perf_counter()
    laid_out = image_mask(mask, frame.shape)
    for _ in range(200):
        apply_mask(frame, laid_out)
    apply_s = (time.perf_counter() - t0) / 200
    assert raster_s < 0.5, raster_s
    assert apply_s < 0.002, apply_s  # measured ~0.03 ms: 0.0006 % of a core at one per 5 s


def test_the_capture_masks_the_thumbnail_before_encoding_it() -> None:
    cap = CameraCapture(
        "cam-m", "rtsp://127.0.0.1:1/x", user=None, password=None,
        tracker=HealthTracker(now=time.monotonic()), privacy=[TOP_LEFT],
    )  # fmt: skip
    frame = np.full((360, 640, 3), 200, dtype=np.uint8)
    cap._analyse(frame, time.monotonic(), True, [])
    snap = cap.snapshot()
    assert snap.thumbnail is not None
    jpeg, taken, w, h = snap.thumbnail
    assert (w, h) == (W, H) and taken <= datetime.now(UTC)
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img[:85, :155].max() < 10  # black inside (JPEG may ring a little at the edge)
    assert img[100:, 170:].min() > 180  # untouched outside
    assert cap._masks.keys() == {(H, W, 3)}  # rasterised once for this size
    cap._analyse(frame, time.monotonic(), True, [])
    assert len(cap._masks) == 1
    again = cap.restarted()  # a restarted thread keeps the camera's mask
    again.stop()
    assert again.privacy == cap.privacy and again.join(10)


# ------------------------------------------------------------------------- masks file ---


def test_a_good_file_and_an_empty_one() -> None:
    masks = parse_masks(
        "# windows\ncam-0001:\n  - [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]\n"
        "  - [[0.6, 0.6], [0.9, 0.6], [0.75, 0.9]]\ncam-0002: []\n"
    )
    assert masks.for_camera("cam-0001")[0] == TOP_LEFT
    assert len(masks.for_camera("cam-0001")) == 2 and masks.for_camera("cam-0002") == ()
    assert masks.for_camera("cam-9999") == ()
    assert parse_masks("# nothing yet\n").cameras == {}
    assert load_masks(None).cameras == {}
    assert load_masks(DEFAULT_MASKS_FILE).cameras == {}  # the shipped file: only an example


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cam-1:\n  - [[0, 0], [1.4, 0], [0.4, 0.5]]\n",
         "m.yaml:2:15: cam-1[0][1][0]: 1.4 is outside the frame: coordinates run from 0 to 1"),
        ("cam-1:\n  - [[0, 0], [\"a\", 0], [0.4, 0.5]]\n",
         "m.yaml:2:15: cam-1[0][1][0]: a coordinate must be a number from 0 to 1"),
        ("cam-1:\n  - [[0, 0], [0.4, 0]]\n",
         "m.yaml:2:5: cam-1[0]: a polygon needs at least 3 points [x, y], not 2"),
        ("cam-1:\n  - [[0, 0], [0.5, 0.5], [1, 1]]\n",
         "m.yaml:2:5: cam-1[0]: the polygon encloses no area (are its points on one line?)"),
        ("cam-1:\n  - [[0, 0, 1], [0.4, 0], [0.4, 0.5]]\n",
         "m.yaml:2:6: cam-1[0][0]: a point is a pair [x, y]"),
        ("cam-1: 5\n", "m.yaml:1:8: cam-1: expected a list of polygons"),
        ("ok:\n  - [[0, 0], [0.4, 0], [0.4, 0.5]]\n12:\n  - [[0, 0], [0.4, 0], [0.4, 0.5]]\n",
         "m.yaml:3:1: the camera id 12 must be text (quote it)"),
        ("- cam-1\n", "m.yaml:1: expected a mapping of camera id -> list of polygons"),
        ("cam-1: [\n", "m.yaml:2:1: not valid YAML"),
        ("cam-1:\n  - [[0, true], [0.4, 0], [0.4, 0.5]]\n",
         "m.yaml:2:10: cam-1[0][0][1]: a coordinate must be a number from 0 to 1"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_line_and_reason(text: str, expected: str) -> None:
    with pytest.raises(MaskFileError) as err:
        parse_masks(text, "m.yaml")
    assert str(err.value).startswith(expected), str(err.value)


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MaskFileError, match="no such file"):
        load_masks(tmp_path / "absent.yaml")


def test_the_area_of_a_polygon() -> None:
    assert polygon_area(TOP_LEFT) == pytest.approx(0.25)
    assert PrivacyMasks().cameras == {}


# --------------------------------------------------------------------------- settings ---


def test_privacy_settings_default_to_no_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOURS", "EVERY_SECONDS"):
        monkeypatch.delenv(f"IOC_THUMBNAIL_HISTORY_{name}", raising=False)
    monkeypatch.delenv("IOC_PRIVACY_MASKS_FILE", raising=False)
    cs = camera_settings(Settings(_env_file=None, environment="test"))  # type: ignore[call-arg]
    assert cs.thumbnail_history_hours == 0 and cs.history_every_s is None
    assert cs.privacy_masks_file == DEFAULT_MASKS_FILE
    monkeypatch.setenv("IOC_THUMBNAIL_HISTORY_HOURS", "24")
    monkeypatch.setenv("IOC_THUMBNAIL_HISTORY_EVERY_SECONDS", "30")
    monkeypatch.setenv("IOC_PRIVACY_MASKS_FILE", str(tmp_path / "m.yaml"))
    on = camera_settings(Settings(_env_file=None, environment="test"))  # type: ignore[call-arg]
    assert on.history_every_s == 30 and on.privacy_masks_file == tmp_path / "m.yaml"
    for name, bad in (("HOURS", "-1"), ("HOURS", "a day"), ("EVERY_SECONDS", "0")):
        with monkeypatch.context() as m, pytest.raises(ValueError, match="IOC_THUMBNAIL_HISTORY"):
            m.setenv(f"IOC_THUMBNAIL_HISTORY_{name}", bad)
            Settings(_env_file=None, environment="test")  # type: ignore[call-arg]


def test_retention_reads_the_same_history_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    keep = {p.relation: p.keep for p in policies(RollupSettings())}
    assert keep["camera_thumbnail_history"].total_seconds() == 0  # off: every past chunk goes
    monkeypatch.setenv("IOC_THUMBNAIL_HISTORY_HOURS", "36")
    keep = {p.relation: p.keep for p in policies(RollupSettings())}
    assert keep["camera_thumbnail_history"].total_seconds() == 36 * 3600
    assert RollupSettings(thumbnail_history_hours=2).thumbnail_history_hours == 2
