"""Start the camera simulator and switch its faults (from the venv side).

The simulator itself (``gst_server.py``) runs under Debian's ``/usr/bin/python3``; this module
renders its backgrounds, builds its command line and talks to its control endpoint, a small
JSON-over-HTTP API on 127.0.0.1:

    GET  /health                     {"ok": true, "cameras": N}
    GET  /cameras                    each camera's path, faults and frames sent
    GET  /stats                      frames sent per camera (what the server really sends)
    POST /cameras/<n>/faults         {"fault": "frozen", "on": true}
    POST /cameras/<n>/clear          every fault of camera n off
    POST /clear                      every fault of every camera off
    GET  /time, POST /time           the day/night cycle's time of day, {"hour": 22.5}
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.cameras.gst_server import FAULTS
from simulators.cameras.scene import write_backgrounds

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parent / "gst_server.py"

__all__ = ["FAULTS", "CameraSimulator", "SimulatorConfig", "SimulatorControl"]


@dataclass(frozen=True)
class SimulatorConfig:
    port: int
    control_port: int
    cameras: int = 4
    width: int = 640
    height: int = 360
    fps: int = 15
    user: str = "ioc-cam"
    password: str = ""
    day_seconds: float = 600.0
    phase: float = 0.4
    seed: int = 58
    blur_factor: int = 8
    low_fps_keep: int = 5
    drop_every: float = 2.0

    def argv(self, backgrounds: Path) -> list[str]:
        return [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            f"--port={self.port}",
            f"--control-port={self.control_port}",
            f"--cameras={self.cameras}",
            f"--width={self.width}",
            f"--height={self.height}",
            f"--fps={self.fps}",
            f"--user={self.user}",
            f"--backgrounds={backgrounds}",
            f"--seed={self.seed}",
            f"--day-seconds={self.day_seconds}",
            f"--phase={self.phase}",
            f"--blur-factor={self.blur_factor}",
            f"--low-fps-keep={self.low_fps_keep}",
            f"--drop-every={self.drop_every}",
        ]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["IOC_RTSP_PASSWORD"] = self.password  # never on the command line
        env["IOC_SIM_DIE_WITH_PARENT"] = "1"
        return env


def prepare(config: SimulatorConfig, state_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Render the backgrounds; return the simulator's argv and environment."""
    if not config.password:
        raise ValueError("the camera simulator needs a password (IOC_RTSP_PASSWORD)")
    if not Path(SYSTEM_PYTHON).exists():
        raise FileNotFoundError(
            f"{SYSTEM_PYTHON} not found: the camera simulator needs Debian's python3 with "
            "python3-gi and gir1.2-gst-rtsp-server-1.0 (run `make setup`)"
        )
    backgrounds = write_backgrounds(
        state_dir / "cameras", config.cameras, config.width, config.height, config.seed
    )
    return config.argv(backgrounds), config.env()


class SimulatorControl:
    """Client of the simulator's control endpoint."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RuntimeError(f"camera simulator said {exc.code}: {detail}") from None

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def cameras(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/cameras")["cameras"]
        return result

    def frames_sent(self) -> dict[int, int]:
        stats = self._call("GET", "/stats")
        return {int(k): int(v) for k, v in stats["frames_sent"].items()}

    def set_fault(self, camera: int, fault: str, on: bool = True) -> dict[str, Any]:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        result: dict[str, Any] = self._call(
            "POST", f"/cameras/{camera}/faults", {"fault": fault, "on": on}
        )
        return result

    def clear(self, camera: int | None = None) -> None:
        self._call("POST", "/clear" if camera is None else f"/cameras/{camera}/clear", {})

    def time_of_day(self, hour: float | None = None) -> dict[str, float]:
        """``{"hour": h, "day_seconds": d}``: the scenes' time of day (0 = midnight) and the
        length of their day. With ``hour``, set it first (the cycle goes on from there)."""
        body = None if hour is None else {"hour": hour}
        reply = self._call("GET" if hour is None else "POST", "/time", body)
        return {"hour": float(reply["hour"]), "day_seconds": float(reply["day_seconds"])}

    def wait_ready(
        self, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"camera simulator exited with code {proc.returncode}")
            try:
                h = self.health()
                if h.get("started", h["cameras"]) >= h["cameras"]:
                    return  # every camera's pipeline is running
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"camera simulator did not start within {timeout:.0f} s at {self.base}"
                ) from None
            time.sleep(0.2)


class CameraSimulator:
    """Owns a simulator process (tests, benchmarks): ``start()``, ``stop()``, ``control``."""

    def __init__(self, config: SimulatorConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.control = SimulatorControl(config.control_port)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> CameraSimulator:
        argv, env = prepare(self.config, self.state_dir)
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        try:
            self.control.wait_ready(timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, index: int, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None and password is not None else ""
        return f"rtsp://{auth}127.0.0.1:{self.config.port}/cam{index}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> CameraSimulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
