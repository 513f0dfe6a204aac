"""A child ``ioc`` process of ``ioc bench chaos``: started, killed and restarted by the harness,
which is its only supervisor."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ioc.bench.common import spawn, wait_http
from ioc.config import Settings


class Proc:
    """One child ``ioc`` process the harness kills and restarts (its own supervisor).

    Ready when ``ready`` appears in its log, when ``ready`` (an http URL) answers, or, when
    ``probe`` is set, when that returns True."""

    def __init__(self, settings: Settings, name: str, args: list[str], logs: Path, ready: str,
                 **env: str) -> None:  # fmt: skip
        self.settings, self.name, self.args, self.logs = settings, name, args, logs
        self.ready, self.env, self.generation = ready, env, 0
        self.probe: Callable[[], bool] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.unexpected_exits = 0

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}.{self.generation}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.generation += 1
        self.proc = spawn(self.settings, *self.args, log=self.log, **self.env)

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        if self.ready.startswith("http"):
            wait_http(self.ready, self.proc, timeout)
            return
        deadline = time.monotonic() + timeout
        while not self._ready_now():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready ({self.ready!r}); see {self.log}")
            time.sleep(0.1)

    def _ready_now(self) -> bool:
        if self.probe is not None:
            return self.probe()
        return self.ready in self.log.read_text(errors="replace")

    def is_ready(self) -> bool:
        try:
            self.wait_ready(0)
        except RuntimeError:
            return False
        return True

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def check(self) -> None:
        """Restart a process that died by itself (counted: it should not happen)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits += 1
            self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
