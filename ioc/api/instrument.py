"""What the API tells about itself besides its routes: a request id on every request (and in
every log line it causes), one structured access-log line per request, and the database pool's
statistics as Prometheus metrics. :func:`install` wires both into an app.
"""

from __future__ import annotations

import re
import time
import uuid
import weakref
from collections.abc import Iterator

import structlog
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("ioc.api")

REQUEST_ID_HEADER = "X-Request-ID"
# What a caller's id may look like: anything else (too long, spaces, control characters) is
# replaced by one of ours, so a header cannot forge or break log lines.
_GOOD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=@-]{0,127}")
# Asked every few seconds by machines: logged at debug level only.
_QUIET = ("/metrics", "/api/v1/health", "/api/v1/ready", "/static/")


def request_id(incoming: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new one."""
    if incoming and _GOOD_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Takes X-Request-ID (or makes one), binds it as ``request_id`` into structlog's context
    for everything the request does, returns it in the response header, and logs the request
    (method, path without the query, status, duration, user) when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = REQUEST_ID_HEADER.lower().encode()
        raw = next((v for k, v in scope.get("headers", []) if k == header), None)
        rid = request_id(raw.decode("latin-1") if raw is not None else None)
        scope.setdefault("state", {})["request_id"] = rid
        if scope["type"] == "websocket":
            # The server's own send, for frames written as is (streams.direct); this is the
            # outermost middleware that sees websockets, the ones outside pass it unchanged.
            scope["state"]["asgi_send"] = send
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if scope["type"] == "http":
                    _access(scope, status, time.perf_counter() - started)


def _access(scope: Scope, status: int, seconds: float) -> None:
    path = scope.get("path", "")
    who = scope.get("state", {}).get("principal")
    line = log.debug if path.startswith(_QUIET) and status < 500 else log.info
    line(
        "request",
        method=scope.get("method"),
        path=path[:300],
        status=status or 500,  # no response started: the app failed
        ms=round(seconds * 1000, 1),
        user=getattr(who, "username", None),
    )


# ------------------------------------------------------------------------ pool metrics ---


class PoolCollector(Collector):
    """psycopg_pool's ``get_stats()`` of every live app's pool, summed (one per API process;
    tests may hold several apps)."""

    def __init__(self) -> None:
        self.apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()

    def _stats(self) -> list[dict[str, int]]:
        pools = [getattr(app.state, "pool", None) for app in list(self.apps)]
        return [p.get_stats() for p in pools if p is not None]

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()

        def total(key: str) -> float:
            return float(sum(s.get(key, 0) for s in stats))

        gauges = (
            ("ioc_db_pool_size", "connections the API's pool holds (in use or idle)", "pool_size"),
            ("ioc_db_pool_available", "idle connections in the pool", "pool_available"),
            ("ioc_db_pool_waiting", "requests waiting for a connection", "requests_waiting"),
            ("ioc_db_pool_max", "the pool's maximum size", "pool_max"),
        )
        for name, doc, key in gauges:
            yield GaugeMetricFamily(name, doc, value=total(key))
        counters = (
            ("ioc_db_pool_requests", "connections asked of the pool", "requests_num"),
            ("ioc_db_pool_requests_errors", "requests that got no connection", "requests_errors"),
            ("ioc_db_pool_connections_lost", "connections found broken", "connections_lost"),
        )
        for name, doc, key in counters:
            yield CounterMetricFamily(name, doc, value=total(key))
        yield CounterMetricFamily(
            "ioc_db_pool_wait_seconds",
            "time requests spent waiting for a connection",
            value=total("requests_wait_ms") / 1000,
        )

    def describe(self) -> Iterator[Metric]:
        return self.collect()


POOLS = PoolCollector()
REGISTRY.register(POOLS)


def install(app: FastAPI) -> None:
    """Request ids and the access log (outermost middleware), pool metrics for this app."""
    app.add_middleware(RequestIdMiddleware)
    POOLS.apps.add(app)
