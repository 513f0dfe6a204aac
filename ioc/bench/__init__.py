"""Benchmarks behind ``ioc bench NAME [--quick]``.

Each is a module with ``main(settings, quick: bool) -> dict``; ``ioc bench`` prints the dict as
one JSON line, last. Register a new one here (name -> module), imported only when run.
"""

from __future__ import annotations

BENCHES: dict[str, str] = {
    "cameras": "ioc.bench.cameras",
    "dashboard": "ioc.bench.dashboard",
    "ingest": "ioc.bench.ingest",
    "queries": "ioc.bench.queries",
    "alerts": "ioc.bench.alerts",
    "fanout": "ioc.bench.fanout",
    "chaos": "ioc.bench.chaos",
}
