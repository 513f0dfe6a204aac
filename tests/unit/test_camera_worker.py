"""The worker's watchdog over capture threads (no database needed)."""

from __future__ import annotations

import time

from ingest.rtsp.capture import CameraCapture, CaptureOptions
from ingest.rtsp.tracker import HealthTracker
from ingest.rtsp.worker import MAX_RESTARTS, CameraWorker, WorkerConfig


def test_a_dead_capture_is_restarted_at_most_five_times_a_minute() -> None:
    worker = CameraWorker(dsn="postgresql://unused", config=WorkerConfig(worker_id="t"))
    tracker = HealthTracker(now=time.monotonic())
    dead = CameraCapture(
        "cam-x", "rtsp://127.0.0.1:1/cam1", user="u", password="p", tracker=tracker,
        options=CaptureOptions(backoff_base_s=5),
    )  # fmt: skip
    worker.captures["cam-x"] = dead  # never started: its thread is "dead"
    started = []
    try:
        for _ in range(MAX_RESTARTS + 2):
            worker._watchdog()
            cap = worker.captures["cam-x"]
            if cap is not dead and cap not in started:
                started.append(cap)
            cap.stop()
            cap.join(5)  # dies again
        assert len(started) == MAX_RESTARTS
        assert all(c.tracker is tracker for c in started)  # what it learned is kept
        assert tracker._offline.code == "capture_error"
    finally:
        for c in started:
            c.stop()
            c.join(5)
