"""Prometheus metrics of the MQTT ingest worker (standard client library, default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ioc.domain.wire import Reason

RECEIVED = Counter("ioc_ingest_received", "MQTT messages taken from the broker", ["source"])
STORED = Counter("ioc_ingest_stored", "observations written (new rows)", ["source"])
DUPLICATES = Counter(
    "ioc_ingest_duplicates", "observations already stored (QoS 1 redelivery, replays)", ["source"]
)
REJECTED = Counter(
    "ioc_ingest_rejected", "messages dead-lettered, by reason code", ["source", "reason"]
)
LATE = Counter(
    "ioc_ingest_late",
    "stored observations that arrived more than 60 s after they were made",
    ["source"],
)
AVAILABILITY = Counter(
    "ioc_ingest_availability", "availability messages (online/offline, Last Will)", ["state"]
)
DB_RETRIES = Counter("ioc_ingest_db_retries", "batch writes retried after a database error")
BATCH_SECONDS = Histogram(
    "ioc_ingest_batch_seconds",
    "time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "ioc_ingest_batch_size", "messages per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000)
)
LAG_SECONDS = Histogram(
    "ioc_ingest_lag_seconds",
    "observed_at to commit, per stored observation (end-to-end lag)",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
BACKLOG = Gauge("ioc_ingest_backlog", "messages received but not yet written")
UNACKED = Gauge("ioc_ingest_unacknowledged", "messages written or pending but not yet acknowledged")
CONNECTED = Gauge("ioc_ingest_broker_connected", "1 while connected to the broker")
LAST_STORED = Gauge(
    "ioc_ingest_last_stored_timestamp_seconds",
    "unix time of the last commit that stored new observations",
)
DB_OK = Gauge(
    "ioc_ingest_database_ok_timestamp_seconds",
    "unix time of the worker's last successful database statement (write or idle ping)",
)

for _reason in Reason:  # every dead-letter reason exists from the start, at 0
    REJECTED.labels("mqtt", str(_reason))
