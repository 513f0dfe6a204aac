"""Prometheus metrics of the alert engine (``ioc alerts``; default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ioc.domain.lifecycle import Action

SEVERITIES = ("critical", "major", "minor", "info")
OPEN_STATUSES = ("pending", "firing", "acknowledged", "flapping", "suppressed")

OPEN = Gauge(
    "ioc_alerts_open",
    "alerts not resolved, by severity and status (the whole centre, read by the engine)",
    ["severity", "status"],
)
TRANSITIONS = Counter(
    "ioc_alerts_transitions", "alert transitions this engine applied, by action", ["action"]
)
CYCLE_SECONDS = Histogram(
    "ioc_alerts_cycle_seconds",
    "time to evaluate every rule once",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAST_CYCLE = Gauge(
    "ioc_alerts_last_cycle_timestamp_seconds", "unix time the last evaluation cycle ended"
)
CYCLE_ERRORS = Counter(
    "ioc_alerts_cycle_errors", "evaluation cycles that failed (database errors; retried)"
)

for _action in Action:
    if _action is not Action.STILL_FLAPPING:
        TRANSITIONS.labels(_action.value)
for _sev in SEVERITIES:
    for _status in OPEN_STATUSES:
        OPEN.labels(_sev, _status)


def set_open(counts: dict[tuple[str, str], int]) -> None:
    """The open-alert gauge from (severity, status) -> count; combinations absent are 0."""
    for sev in SEVERITIES:
        for status in OPEN_STATUSES:
            OPEN.labels(sev, status).set(counts.get((sev, status), 0))
    for (sev, status), n in counts.items():
        if sev not in SEVERITIES or status not in OPEN_STATUSES:
            OPEN.labels(sev, status).set(n)  # a severity or status added later still shows
