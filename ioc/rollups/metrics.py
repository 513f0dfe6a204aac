"""Prometheus metrics of ``ioc rollups`` (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROLLUPS = ("traffic", "availability")  # the rows of rollup_state

LAG_SECONDS = Gauge(
    "ioc_rollup_lag_seconds",
    "seconds the rollup watermark is behind now (received time for traffic, slot time for"
    " availability)",
    ["rollup"],
)
TICKS = Counter("ioc_rollup_ticks", "rollup ticks that succeeded")
TICK_SECONDS = Histogram(
    "ioc_rollup_tick_seconds",
    "time of one rollup tick",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
LAST_TICK = Gauge("ioc_rollup_last_tick_timestamp_seconds", "unix time the last good tick ended")
READINGS = Counter("ioc_rollup_readings", "readings rolled up")
TOO_LATE = Counter(
    "ioc_rollup_too_late", "readings for times whose raw data retention already dropped"
)
ERRORS = Counter("ioc_rollup_errors", "ticks that failed (database errors; retried)")

for _rollup in ROLLUPS:
    LAG_SECONDS.labels(_rollup)
