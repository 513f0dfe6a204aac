"""``ioc bench cameras [--quick]``: what camera health costs, against bare decoding.

One run, three processes on the same simulated streams (640x360, 15 fps; 20 cameras with
``--quick``, else 40):

- the simulator (GStreamer RTSP server): its own cost limits how many cameras one machine can
  simulate, so it is reported too;
- the real health worker (``ioc ingest rtsp``: leases, capture threads, analysis, database;
  it counts every frame and decodes about one a second, see ``ingest/rtsp/sampling.py``);
- a bare OpenCV loop that only ``read()``s every stream: what watching them costs (OpenCV's
  FFmpeg backend, over TCP, with the worker's timeouts and one decoder thread).

Measured only once every stream is open and delivering. Cameras per core = cameras / the
process's CPU share (1.0 = one core); ``ratio`` = analysed ÷ bare cameras per core. The worker
must keep each camera's measured fps at >= 95 % of what the server really sent (``fps_ok``).
The worker writes to a database as in production: its own throw-away copy of the local
services (``common.isolated_stack``), so a running centre is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from ioc.bench.common import free_port, isolated_stack, spawn
from ioc.config import Settings

W, H, FPS = 640, 360, 15
USER, PASSWORD = "bench", "bench-only-secret"


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _say(msg: str) -> None:
    print(f"bench cameras: {msg}", file=sys.stderr, flush=True)


class Bare:
    """The bare decode loop as a child process; its last report (JSON lines) is kept."""

    def __init__(self, port: int, cameras: int) -> None:
        env = dict(os.environ, IOC_RTSP_USER=USER, IOC_RTSP_PASSWORD=PASSWORD)
        argv = [sys.executable, "-m", "ioc.bench.cameras", "--bare", str(port), str(cameras)]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        self.last: dict[str, Any] = {"opened": 0, "frames": [0] * cameras}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last = json.loads(line)


def bare_loop(port: int, cameras: int) -> None:
    """Child process: read every frame of every stream, report counts every second."""
    import cv2

    from ingest.rtsp.capture import STREAM_OPTIONS, CaptureOptions, with_credentials

    # The worker's stream options (read at each open), FFmpeg quiet.
    options = "|".join(f"{k};{v}" for k, v in STREAM_OPTIONS.items())
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", options)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    o = CaptureOptions()  # and its timeouts and decoder threads
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(o.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(o.read_timeout_s * 1000),
        cv2.CAP_PROP_N_THREADS, o.decoder_threads,
    ]  # fmt: skip
    frames = [0] * cameras
    opened = [False] * cameras

    def run(i: int) -> None:
        url = with_credentials(
            f"rtsp://127.0.0.1:{port}/cam{i + 1}", USER, os.environ["IOC_RTSP_PASSWORD"]
        )
        while True:
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
            opened[i] = cap.isOpened()
            while cap.isOpened():
                ok, _ = cap.read()
                if not ok:
                    break
                frames[i] += 1
            cap.release()
            opened[i] = False
            time.sleep(0.5)

    for i in range(cameras):
        threading.Thread(target=run, args=(i,), daemon=True).start()
    while True:
        time.sleep(1.0)
        print(json.dumps({"opened": sum(opened), "frames": frames}), flush=True)


async def _db(settings: Settings, sql: str, *args: Any) -> list[dict[str, Any]]:
    from ioc.db.connect import connect

    conn = await connect(settings.dsn, autocommit=True)
    try:
        cur = await conn.execute(sql, args)
        return list(await cur.fetchall()) if cur.description else []
    finally:
        await conn.close()


async def _seed(settings: Settings, n: int, port: int) -> list[str]:
    from ioc.db.cameras import seed_cameras
    from ioc.db.connect import connect
    from ioc.db.seed import load_geography

    conn = await connect(settings.dsn)
    try:
        async with conn.transaction():
            geo = load_geography(settings.areas_file)
            return await seed_cameras(conn, geo, n, 1, f"rtsp://127.0.0.1:{port}")
    finally:
        await conn.close()


def _received(settings: Settings, ids: list[str]) -> dict[str, tuple[int, datetime]]:
    rows = asyncio.run(
        _db(settings, "SELECT device_id, last FROM device_state WHERE device_id = ANY(%s)", ids)
    )
    return {
        r["device_id"]: (int(r["last"]["frames"]), datetime.fromisoformat(r["last"]["checked_at"]))
        for r in rows
    }


def _worker_ready(settings: Settings, ids: list[str]) -> int:
    """How many cameras the worker sees ok at (nearly) the full frame rate."""
    rows = asyncio.run(
        _db(settings, "SELECT last FROM device_state WHERE device_id = ANY(%s)", ids)
    )
    last = [r["last"] for r in rows]
    return sum(1 for s in last if s.get("status") == "ok" and (s.get("fps") or 0) >= 0.95 * FPS)


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    n, measure_s = (20, 20.0) if quick else (40, 45.0)
    with isolated_stack(settings, sensors=0) as bench:
        return _run(bench, n, measure_s, quick)


def _run(settings: Settings, n: int, measure_s: float, quick: bool) -> dict[str, Any]:
    from simulators.cameras.control import CameraSimulator, SimulatorConfig

    cfg = SimulatorConfig(
        port=free_port(), control_port=free_port(), cameras=n, width=W, height=H, fps=FPS,
        user=USER, password=PASSWORD, day_seconds=600.0, phase=0.4,
    )  # fmt: skip
    state = Path(settings.state_dir)
    sim = CameraSimulator(cfg, state).start()
    procs: list[subprocess.Popen[Any]] = []
    try:
        ids = asyncio.run(_seed(settings, n, cfg.port))
        worker = spawn(settings, "ingest", "rtsp", log=state / "worker.log",
                       IOC_RTSP_USER=USER, IOC_RTSP_PASSWORD=PASSWORD)  # fmt: skip
        procs.append(worker)
        bare = Bare(cfg.port, n)
        procs.append(bare.proc)
        _say(f"{n} cameras {W}x{H}@{FPS}: waiting for every stream to deliver")
        deadline = time.monotonic() + 120
        while (ready := _worker_ready(settings, ids)) < n or bare.last["opened"] < n:
            if time.monotonic() > deadline:
                tail = (state / "worker.log").read_text(errors="replace").splitlines()[-15:]
                _say("the worker's last lines:\n" + "\n".join(tail))
                raise TimeoutError(
                    f"the streams did not all deliver within 120 s: worker {ready}/{n} ok at "
                    f"full rate, bare loop {bare.last['opened']}/{n} open"
                )
            if worker.poll() is not None:
                raise RuntimeError(f"the health worker exited with code {worker.returncode}")
            time.sleep(1.0)
        time.sleep(6.0)  # let the backlog of the last opens drain: measure a steady state
        ps = {"worker": psutil.Process(worker.pid), "bare": psutil.Process(bare.proc.pid),
              "sim": psutil.Process(sim.pid)}  # fmt: skip
        _say(f"all delivering; measuring for {measure_s:.0f} s")
        t0, cpu0 = time.monotonic(), {k: _cpu(p) for k, p in ps.items()}
        sent0, bare0 = sim.control.frames_sent(), list(bare.last["frames"])
        got0 = _received(settings, ids)
        time.sleep(measure_s)
        wall = time.monotonic() - t0
        cpu = {k: (_cpu(p) - cpu0[k]) / wall for k, p in ps.items()}
        sent1, bare1 = sim.control.frames_sent(), list(bare.last["frames"])
        got1 = _received(settings, ids)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        sim.stop()
    sent_fps = {i: (sent1[i] - sent0[i]) / wall for i in sent1}
    # Frames the worker received per second (its own counter, between two state writes).
    measured = {
        i: (got1[d][0] - got0[d][0]) / max(1e-9, (got1[d][1] - got0[d][1]).total_seconds())
        for i, d in enumerate(ids, start=1)
    }
    fps_ratio = min(measured[i] / max(sent_fps[i], 1e-9) for i in sent_fps)
    bare_fps = min((bare1[i] - bare0[i]) / wall for i in range(n))
    analysed_cpc = n / max(cpu["worker"], 1e-9)
    bare_cpc = n / max(cpu["bare"], 1e-9)
    ratio = analysed_cpc / bare_cpc
    return {
        "bench": "cameras",
        "quick": quick,
        "cameras": n,
        "resolution": f"{W}x{H}",
        "fps": FPS,
        "measure_s": round(wall, 1),
        "server_fps_min": round(min(sent_fps.values()), 2),
        "worker_cpu_cores": round(cpu["worker"], 3),
        "analysed_cameras_per_core": round(analysed_cpc, 1),
        "worker_fps_min": round(min(measured.values()), 2),
        "worker_fps_vs_sent_min": round(fps_ratio, 3),
        "fps_ok": fps_ratio >= 0.95,
        "bare_cpu_cores": round(cpu["bare"], 3),
        "bare_decode_cameras_per_core": round(bare_cpc, 1),
        "bare_fps_min": round(bare_fps, 2),
        "ratio": round(ratio, 3),
        "simulator_cpu_cores": round(cpu["sim"], 3),
        "simulator_core_share_per_camera": round(cpu["sim"] / n, 4),
        "targets_met": {
            "ratio>=0.8": ratio >= 0.8,
            "analysed_per_core>=100": analysed_cpc >= 100,
            "fps>=95%": fps_ratio >= 0.95,
        },
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="bare OpenCV read loop (child of ioc bench cameras)")
    p.add_argument("--bare", nargs=2, type=int, metavar=("PORT", "CAMERAS"), required=True)
    bare_loop(*p.parse_args().bare)
