"""Owns the child processes of ``ioc dev``: start in order, restart a crashed one (at most
``max_restarts`` a minute, like Frigate's watchdog), stop all in reverse order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("ioc.supervisor")


class SupervisorError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)


class Supervisor:
    def __init__(self, *, env: dict[str, str] | None = None, max_restarts: int = 5) -> None:
        self.children: list[Child] = []
        self.env = env or dict(os.environ)
        self.max_restarts = max_restarts

    def add(self, name: str, *args: str) -> Child:
        child = Child(name, [sys.executable, "-m", "ioc.cli", *args])
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        # New session: Ctrl-C reaches only us, and we stop the children in order.
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        log.info("started", child=child.name, pid=child.proc.pid)

    def check(self) -> None:
        """Restart children that died; raise when one keeps dying."""
        now = time.monotonic()
        for child in self.children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                continue
            while child.restarts and now - child.restarts[0] > 60:
                child.restarts.popleft()
            if len(child.restarts) >= self.max_restarts:
                raise SupervisorError(
                    f"{child.name} exited {self.max_restarts} times in a minute (last code {code});"
                    " see its log above"
                )
            child.restarts.append(now)
            log.warning("restarting", child=child.name, exit_code=code)
            self._spawn(child)

    def stop(self, timeout: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
                try:
                    child.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("killing", child=child.name)
                    child.proc.kill()
                    child.proc.wait()
                log.info("stopped", child=child.name)
