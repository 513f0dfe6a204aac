"""What the camera simulator serves: its arguments, the fault names, the day/night curve and
each camera's GStreamer pipeline. Standard library only: imported by ``gst_server`` (Debian's
python3) and by the venv side (``control``, tests) alike."""

from __future__ import annotations

import argparse
import math
import os

FAULTS = (
    "frozen", "black", "blurred", "covered", "moved", "low_fps", "drops", "hang", "auth", "path",
)  # fmt: skip
CARS = (  # (lane as a fraction of the height, speed in frame widths per second, ARGB colour)
    (0.70, 0.22, 0xFFE6C814),  # bright against the dark road, by night too
    (0.86, -0.30, 0xFFF0F0F0),
    (0.78, 0.37, 0xFFFF8C00),
)
# (brightness, contrast, saturation) of videobalance for a covered lens (a hand or cloth lit by
# the camera's own infrared: flat, not black) and for a black picture.
COVERED = (0.2, 0.0, 0.0)
BLACK = (-1.0, 0.0, 0.0)
PAN = 0.3  # "moved" pans the view by this fraction of the frame width
TICK_MS = 100


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="RTSP camera simulator (GStreamer)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--user", default="ioc-cam")
    p.add_argument("--backgrounds", required=True, help="directory of bg<N>-WxH-SEED.png")
    p.add_argument("--seed", type=int, default=58)
    p.add_argument("--day-seconds", type=float, default=600.0, help="one day/night cycle")
    p.add_argument("--phase", type=float, default=0.4, help="time of day at start (0=midnight)")
    p.add_argument("--blur-factor", type=int, default=8)
    p.add_argument("--low-fps-keep", type=int, default=5, help="low_fps keeps 1 frame in N")
    p.add_argument("--drop-every", type=float, default=2.0, help="seconds between drops")
    return p.parse_args(argv)


def daylight(t: float, day_seconds: float, phase: float) -> float:
    """0 at midnight, 1 at noon."""
    return 0.5 - 0.5 * math.cos(2 * math.pi * (phase + t / day_seconds))


def balance_for(light: float) -> tuple[float, float]:
    """(brightness, contrast) for videobalance: nights are darker and flatter, never black."""
    return -0.12 * (1 - light), 0.65 + 0.35 * light


def launch_string(args: argparse.Namespace, index: int) -> str:
    w, h, f = args.width, args.height, args.fps
    bg = os.path.join(args.backgrounds, f"bg{index}-{w}x{h}-{args.seed}.png")
    cw, ch = max(16, w // 10) // 2 * 2, max(8, h // 12) // 2 * 2
    raw = f"video/x-raw,format=I420,framerate={f}/1"
    parts = [
        f'filesrc location="{bg}" ! pngdec ! videoconvert ! video/x-raw,format=I420 '
        f"! imagefreeze is-live=true ! {raw} ! mix.sink_0"
    ]
    for i, (_, _, colour) in enumerate(CARS, start=1):
        parts.append(
            f"videotestsrc is-live=true pattern=solid-color foreground-color={colour} "
            f"! {raw},width={cw},height={ch} ! mix.sink_{i}"
        )
    parts.append(
        f"compositor name=mix background=black ! {raw},width={w},height={h} "
        f"! videobalance name=bal ! videoscale ! capsfilter name=blurcaps "
        f"caps=video/x-raw,width={w},height={h} ! videoscale ! video/x-raw,width={w},height={h} "
        f"! x264enc name=enc tune=zerolatency speed-preset=ultrafast threads=1 key-int-max={f} "
        f"bitrate={max(200, w * h * f // 4000)} ! valve name=valve drop=false "
        f"! rtph264pay name=pay0 pt=96 config-interval=1"
    )
    return "( " + " ".join(parts) + " )"
