"""Prometheus metrics of a camera-health worker (``ioc ingest rtsp``; default registry).

Labels stay bounded: the camera pool (a handful), a status or a reason code; never a camera id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from ioc.domain.camera import OFFLINE_REASONS, OK, PRIORITY

STATUSES = (OK, *PRIORITY, "unknown")

LEASES_HELD = Gauge("ioc_camera_leases_held", "cameras leased by this worker", ["pool"])
LEASES_UNOWNED = Gauge(
    "ioc_camera_leases_unowned",
    "enabled cameras of the pool whose lease no live worker holds (seen by this worker)",
    ["pool"],
)
TAKEOVERS = Counter(
    "ioc_camera_lease_takeovers",
    "leases this worker took over from another worker whose lease had expired",
    ["pool"],
)
LEASE_CYCLES = Counter("ioc_camera_lease_cycles", "lease renewals that succeeded", ["pool"])
DB_ERRORS = Counter(
    "ioc_camera_db_errors", "database errors of the worker, by what it was doing", ["during"]
)
CAPTURES = Gauge("ioc_camera_captures", "capture threads running (one per leased camera)")
RECONNECTS = Counter(
    "ioc_camera_capture_reconnects", "stream (re)opens after a capture's first open"
)
OPEN_FAILURES = Counter(
    "ioc_camera_open_failures", "stream opens that failed, by reason code", ["reason"]
)
FRAMES = Counter("ioc_camera_frames", "video frames received (every one counts towards the fps)")
DECODED = Counter(
    "ioc_camera_frames_decoded", "frames decoded for analysis (and the frames those needed)"
)
RESTARTS = Counter("ioc_camera_capture_restarts", "dead capture threads restarted by the watchdog")
STATUS = Gauge("ioc_camera_status", "cameras held by this worker, by status", ["status"])

for _status in STATUSES:
    STATUS.labels(_status)
for _reason in OFFLINE_REASONS:
    OPEN_FAILURES.labels(_reason)
for _during in ("lease", "write"):
    DB_ERRORS.labels(_during)


def count_statuses(statuses: list[str]) -> None:
    """Set the per-status gauge from the statuses of the cameras held now (absent ones: 0)."""
    counts = dict.fromkeys(STATUSES, 0)
    for s in statuses:
        counts[s if s in counts else "unknown"] += 1
    for status, n in counts.items():
        STATUS.labels(status).set(n)
