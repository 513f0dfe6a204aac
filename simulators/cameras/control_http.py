"""The simulator's control endpoint: JSON over HTTP on 127.0.0.1, one thread per request.

Standard library only (the simulator runs under Debian's python3). ``dispatch`` gets
(method, path, body) and returns (HTTP status, JSON-able reply); the simulator makes it run
the command on its GLib main loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Dispatch = Callable[[str, str, dict[str, Any]], tuple[int, Any]]


def serve_json(port: int, dispatch: Dispatch) -> ThreadingHTTPServer:
    """Serve ``dispatch`` on 127.0.0.1:``port`` from a daemon thread; ``shutdown()`` to stop."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                status, reply = 400, {"error": "body must be a JSON object"}
            else:
                status, reply = dispatch(method, self.path, body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, *_: Any) -> None:
            pass

    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise SystemExit(
            f"camera simulator: cannot listen on control port {port} ({exc.strerror}); "
            "set IOC_RTSP_CONTROL_PORT to a free port"
        ) from None
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="control", daemon=True).start()
    return httpd
