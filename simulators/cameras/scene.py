"""Backgrounds for the simulated cameras: one deterministic street scene per camera.

Rendered once with numpy/OpenCV (in the venv) and handed to the GStreamer server as PNG files,
where ``imagefreeze`` repeats them at no per-frame cost. The picture is wider than the camera's
frame (``PAN_MARGIN``): the "moved" fault shows another part of it, as a camera knocked sideways
would. Every block of the frame gets structure at several scales (buildings, windows, road
markings, trees), so blur and a covered lens are measurable everywhere.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

PAN_MARGIN = 0.4  # the background is this much wider than the frame


def background_size(width: int, height: int) -> tuple[int, int]:
    return int(round(width * (1 + PAN_MARGIN) / 2)) * 2, height


def render_background(index: int, width: int, height: int, seed: int = 58) -> npt.NDArray[np.uint8]:
    """A BGR street scene for camera ``index`` (1-based), ``background_size`` pixels."""
    bw, bh = background_size(width, height)
    rng = np.random.default_rng(seed * 10_007 + index)
    img = np.zeros((bh, bw, 3), np.uint8)
    horizon = int(bh * rng.uniform(0.42, 0.52))
    # Sky: a vertical gradient with a few clouds.
    top = np.array(rng.integers(150, 230, 3), np.float32)
    bottom = np.array([225, 215, 200], np.float32)
    ramp = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    img[:horizon] = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)[:, None, :]
    for _ in range(int(rng.integers(3, 7))):
        c = (int(rng.integers(0, bw)), int(rng.integers(0, max(1, horizon // 2))))
        ax = (int(rng.integers(bw // 30, bw // 10)), int(rng.integers(bh // 40, bh // 15)))
        cv2.ellipse(img, c, ax, 0, 0, 360, (245, 245, 245), -1)
    # Buildings along the horizon, each with its grid of windows.
    x = 0
    while x < bw:
        w = int(rng.integers(bw // 16, bw // 6))
        h = int(rng.integers(horizon // 3, int(horizon * 0.95)))
        colour = tuple(int(v) for v in rng.integers(60, 200, 3))
        cv2.rectangle(img, (x, horizon - h), (x + w, horizon), colour, -1)
        cv2.rectangle(img, (x, horizon - h), (x + w, horizon), (40, 40, 40), 2)
        step_x, step_y = max(8, w // 5), max(10, h // 7)
        for wy in range(horizon - h + step_y // 2, horizon - step_y // 2, step_y):
            for wx in range(x + step_x // 3, x + w - step_x // 2, step_x):
                lit = rng.random() < 0.5
                glass = (70, 200, 235) if lit else (90, 70, 50)
                cv2.rectangle(img, (wx, wy), (wx + step_x // 2, wy + step_y // 2), glass, -1)
        x += w + int(rng.integers(2, bw // 40))
    # Pavement, road surface with lane markings and a zebra crossing.
    kerb = horizon + (bh - horizon) // 6
    img[horizon:kerb] = (150, 160, 165)
    img[kerb:] = (70, 72, 75)
    noise = rng.integers(-12, 13, (bh - kerb, bw, 1), dtype=np.int16)
    img[kerb:] = np.clip(img[kerb:].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    for lane_y in (kerb + (bh - kerb) // 3, kerb + 2 * (bh - kerb) // 3):
        for dx in range(0, bw, bw // 12):
            cv2.rectangle(img, (dx, lane_y - 2), (dx + bw // 24, lane_y + 2), (235, 235, 235), -1)
    zebra = int(rng.integers(bw // 5, 4 * bw // 5))
    for i in range(6):
        y0 = kerb + 4 + i * (bh - kerb) // 6
        cv2.rectangle(img, (zebra, y0), (zebra + bw // 14, y0 + (bh - kerb) // 14), (230,) * 3, -1)
    # Trees and lamp posts on the pavement.
    for _ in range(int(rng.integers(4, 9))):
        tx = int(rng.integers(0, bw))
        cv2.line(img, (tx, kerb), (tx, horizon - bh // 10), (40, 60, 90), 3)
        cv2.circle(
            img, (tx, horizon - bh // 8), int(rng.integers(bh // 20, bh // 10)), (40, 130, 60), -1
        )
    for _ in range(3):
        px = int(rng.integers(0, bw))
        cv2.line(img, (px, kerb), (px, horizon - bh // 4), (200, 200, 210), 2)
    cv2.putText(
        img, f"CAM {index:02d}", (bw // 40, bh // 10), cv2.FONT_HERSHEY_SIMPLEX,
        bh / 500, (20, 20, 20), 2, cv2.LINE_AA,
    )  # fmt: skip
    return img


def write_backgrounds(directory: Path, count: int, width: int, height: int, seed: int = 58) -> Path:
    """``bg<N>.png`` for cameras 1..count in ``directory`` (reused when already rendered)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        path = directory / f"bg{i}-{width}x{height}-{seed}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp.png")
            cv2.imwrite(str(tmp), render_background(i, width, height, seed))
            tmp.replace(path)
    return directory


def background_path(directory: Path, index: int, width: int, height: int, seed: int = 58) -> Path:
    return directory / f"bg{index}-{width}x{height}-{seed}.png"
