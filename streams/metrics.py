"""Prometheus metrics of the live stream (the API process's event hub; default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("ioc_stream_clients", "live-stream (websocket) clients subscribed to this process")
RESYNCS = Counter(
    "ioc_stream_resyncs", "clients told to resync: their queue was full (they fell behind)"
)
EVENTS = Counter("ioc_stream_events", "events read from the events log and fanned out")
DELIVERIES = Counter("ioc_stream_deliveries", "event messages queued to clients (events x clients)")
SESSIONS = Counter(
    "ioc_stream_sessions",
    "live-stream sessions started, by how events are written: 'direct' (one frame built per "
    "event for all clients, streams.direct) or 'asgi' (framed per client)",
    ["path"],
)
POSITION = Gauge("ioc_stream_position", "id of the last event the hub fanned out")
LISTENING = Gauge("ioc_stream_listening", "1 while the hub's LISTEN connection is up")
RECONNECTS = Counter("ioc_stream_reconnects", "times the hub lost the database and reconnected")
DATABASE_UP = Gauge(
    "ioc_database_up",
    "1 while this API process reaches PostgreSQL (the hub's connections; /api/v1/ready)",
)
