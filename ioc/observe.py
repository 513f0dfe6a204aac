"""What a long-running role tells about itself: Prometheus metrics, liveness and readiness.

Each role (``ioc ingest mqtt``, ``ioc ingest rtsp``, ``ioc alerts``, ``ioc rollups``) owns one
:class:`Observer`, serving on the role's own port (``IOC_*_METRICS_PORT``; 0 turns it off):

- ``/metrics`` — the default prometheus_client registry (the role's ``ioc_*`` metrics plus the
  client library's ``process_*`` and ``python_*``);
- ``/healthz`` — liveness: 200 while the role's asyncio loop still runs its beat task, 503 once
  it has not for ``stall_s`` (a loop blocked by sync code, or stuck). Restart on failure.
- ``/readyz`` — readiness: 200 when every check of the role passes, else 503; the JSON body
  names each check, whether it passed and how old its last success is. Checks are what the role
  really depends on (its broker connection, its last database success, its last cycle).

The server is a daemon thread of ours (the client library's ``MetricsHandler``): it must answer
even when the loop is stuck, so it never touches asyncio. Checks run in that thread and only
read plain attributes the role's loop writes (floats, ``Event.is_set()``): no locks needed.
The API serves the same things through its own routes (``/metrics``, ``/api/v1/health``,
``/api/v1/ready``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import structlog
from prometheus_client.exposition import MetricsHandler

log = structlog.get_logger("ioc.observe")

BEAT_S = 1.0
STALL_S = 15.0


@dataclass(frozen=True)
class Check:
    """One readiness condition. ``since`` returns the monotonic time of the dependency's last
    success (None: never), failing once that is older than ``max_age_s``; or, with
    ``max_age_s`` None, a plain yes/no (``bool``)."""

    name: str
    probe: Callable[[], float | bool | None]
    max_age_s: float | None = None

    def evaluate(self, now: float) -> dict[str, Any]:
        try:
            value = self.probe()
        except Exception as exc:  # a check must not take the server down
            return {"ok": False, "error": type(exc).__name__}
        if self.max_age_s is None:
            return {"ok": bool(value)}
        if value is None or isinstance(value, bool):
            return {"ok": False, "age_s": None, "max_age_s": self.max_age_s}
        age = max(now - float(value), 0.0)
        return {"ok": age <= self.max_age_s, "age_s": round(age, 3), "max_age_s": self.max_age_s}


class Observer:
    """Readiness checks and the liveness beat of one role, and the HTTP server showing them."""

    def __init__(self, role: str, *, stall_s: float = STALL_S) -> None:
        self.role = role
        self.stall_s = stall_s
        self.checks: list[Check] = []
        self.beat_at: float | None = None  # monotonic, written by the loop's beat task
        self.url: str | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._beat: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------- checks ---
    def recent(self, name: str, since: Callable[[], float | None], max_age_s: float) -> None:
        """Ready only while ``since()`` (a ``time.monotonic()`` value) is younger than this."""
        self.checks.append(Check(name, since, max_age_s))

    def condition(self, name: str, test: Callable[[], bool]) -> None:
        self.checks.append(Check(name, test))

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        results = {c.name: c.evaluate(now) for c in self.checks}
        ok = all(r["ok"] for r in results.values())
        return ok, {"status": "ready" if ok else "not ready", "role": self.role, "checks": results}

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        age = None if self.beat_at is None else time.monotonic() - self.beat_at
        ok = age is not None and age <= self.stall_s
        body = {
            "status": "alive" if ok else "stalled",
            "role": self.role,
            "loop_beat_age_s": None if age is None else round(age, 3),
        }
        return ok, body

    # --------------------------------------------------------------------- serving ---
    async def start(self, port: int, host: str, env_var: str) -> None:
        """Serve on ``host:port`` (0: serve nothing; checks still work) and start beating."""
        if not port:
            return
        from ioc.services import ServiceError

        handler = type("Handler", (_Handler,), {"observer": self})
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ServiceError(
                f"cannot serve metrics on port {port} ({exc.strerror}); set {env_var} to a free"
                " port or 0 to turn metrics off"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"observe-{self.role}", daemon=True
        )
        self._thread.start()
        self._beat = asyncio.create_task(self._beating(), name=f"observe-beat-{self.role}")
        self.url = f"http://{host}:{port}"
        log.info("metrics", url=f"{self.url}/metrics", health=f"{self.url}/healthz",
                 ready=f"{self.url}/readyz")  # fmt: skip

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None

    async def _beating(self) -> None:
        while True:
            self.beat_at = time.monotonic()
            await asyncio.sleep(BEAT_S)


@contextlib.asynccontextmanager
async def serving(role: str, port: int, host: str, env_var: str) -> AsyncIterator[Observer]:
    """An :class:`Observer` serving for the duration of the block (nothing when ``port`` is 0).

    Add checks inside the block, before the role's main loop starts."""
    observer = Observer(role)
    await observer.start(port, host, env_var)
    try:
        yield observer
    finally:
        await observer.stop()


class _Handler(MetricsHandler):
    observer: Observer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if path == "/healthz":
            self._json(*self.observer.liveness())
        elif path == "/readyz":
            self._json(*self.observer.readiness())
        elif path in ("/metrics", "/"):
            super().do_GET()
        else:
            self._json(False, {"error": "not found: try /metrics, /healthz or /readyz"}, 404)

    def _json(self, ok: bool, body: dict[str, Any], status: int | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status or (200 if ok else 503))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)
