"""Camera workers as real processes: leases split the cameras, a kill -9'd worker's cameras are
taken over within the lease time, reconnect cycles leak nothing, credentials stay out of logs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ingest.rtsp.capture import CameraCapture, CaptureOptions, open_stream, with_credentials
from ingest.rtsp.tracker import HealthTracker
from ioc.config import Settings
from ioc.db import cameras as repo
from ioc.db.connect import connect
from ioc.db.seed import load_geography
from simulators.cameras.control import CameraSimulator, SimulatorConfig
from tests.conftest import env_for, free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "ioc-cam", "wkr-Secret-91c"
POOL, PREFIX = "it-leases", "itl-cam-"
LEASE_S = 4.0


@pytest.fixture(scope="module")
def sim(services: Settings) -> Iterator[CameraSimulator]:
    cfg = SimulatorConfig(
        port=free_port(), control_port=free_port(), cameras=4, width=320, height=180, fps=5,
        user=USER, password=PASSWORD,
    )  # fmt: skip
    with CameraSimulator(cfg, services.state_dir) as s:
        yield s


def start_worker(services: Settings, sim: CameraSimulator, name: str, log: Path) -> Any:
    env = env_for(services) | {
        "IOC_RTSP_USER": USER,
        "IOC_RTSP_PASSWORD": PASSWORD,
        "IOC_CAMERA_POOL": POOL,
        "IOC_CAMERA_WORKER_ID": name,
        "IOC_CAMERA_LEASE_SECONDS": str(LEASE_S),
        "IOC_CAMERA_HEALTH_SECONDS": "1",
        "IOC_LOG_LEVEL": "DEBUG",  # the most talkative: credentials must not show even here
    }
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", "ingest", "rtsp"], env=env, stdout=out, stderr=out
    )


async def wait_holders(
    conn: Any, ids: list[str], ok: Any, timeout: float, what: str
) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while True:
        h = await repo.holders(conn, ids)
        if ok(h):
            return h
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: holders after {timeout} s: {h}")
        await asyncio.sleep(0.2)


async def test_workers_share_cameras_and_take_over_a_killed_ones(
    services: Settings, sim: CameraSimulator, tmp_path: Path
) -> None:
    conn = await connect(services.dsn, autocommit=True)
    procs: list[Any] = []
    try:
        ids = await repo.seed_cameras(
            conn, load_geography(services.areas_file), 4, 58,
            f"rtsp://127.0.0.1:{sim.config.port}", pool=POOL, id_prefix=PREFIX,
        )  # fmt: skip
        sim.control.set_fault(4, "auth", True)  # an error path for the logs to (not) leak
        procs.append(start_worker(services, sim, "worker-a", tmp_path / "a.log"))
        await wait_holders(conn, ids, lambda h: set(h.values()) == {"worker-a"}, 30, "A alone")
        procs.append(start_worker(services, sim, "worker-b", tmp_path / "b.log"))
        split = await wait_holders(
            conn, ids,
            lambda h: sorted(map(str, h.values())) == ["worker-a"] * 2 + ["worker-b"] * 2, 30, "split",
        )  # fmt: skip
        a_cams = [d for d, w in split.items() if w == "worker-a"]
        os.kill(procs[0].pid, signal.SIGKILL)
        killed = time.monotonic()
        await wait_holders(
            conn, ids, lambda h: set(h.values()) == {"worker-b"}, LEASE_S * 3, "takeover"
        )
        took = time.monotonic() - killed
        # A lease lasts LEASE_S from its last renewal; B looks every LEASE_S / 3.
        assert took <= LEASE_S + LEASE_S / 3 + 1.5, f"takeover took {took:.1f} s"
        # ... and B really watches them: their state is written by B now.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cur = await conn.execute(
                "SELECT device_id, last FROM device_state WHERE device_id = ANY(%s)", (a_cams,)
            )
            rows = {r["device_id"]: r["last"] for r in await cur.fetchall()}
            if len(rows) == 2 and all(r["worker"] == "worker-b" for r in rows.values()):
                break
            await asyncio.sleep(0.3)
        else:
            pytest.fail(f"worker-b did not write the taken-over cameras' state: {rows}")
        procs[1].send_signal(signal.SIGTERM)  # an orderly stop gives every lease back at once
        assert procs[1].wait(15) == 0
        assert set((await repo.holders(conn, ids)).values()) == {None}
        print(f"takeover after kill -9: {took:.1f} s (lease {LEASE_S:.0f} s)")
    finally:
        sim.control.clear()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        await conn.close()
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "auth_failed" in logs and "watching camera" in logs
    assert PASSWORD not in logs
    assert f"{USER}:" not in logs and "@127.0.0.1" not in logs


def test_reconnect_cycles_leave_no_thread_or_memory_behind(sim: CameraSimulator) -> None:
    me = psutil.Process()

    def settle() -> tuple[int, int]:
        time.sleep(0.5)
        return threading.active_count(), me.num_threads()

    def session() -> None:  # open, decode a keyframe, close
        with open_stream(real, CaptureOptions()) as container:
            video = container.streams.video[0]
            key = next(p for p in container.demux(video) if p.is_keyframe)
            assert video.codec_context.decode(key)

    # Warm up PyAV/FFmpeg once, so lazily created pools count as the baseline.
    real = with_credentials(sim.url(1), USER, PASSWORD)
    session()
    py0, os0 = settle()
    rss0 = me.memory_info().rss

    # 1. 200 failing cycles through the supervised capture (wrong path, no backoff to speak of).
    fast = CaptureOptions(
        backoff_base_s=0.001, backoff_cap_s=0.002, max_opens_per_minute=10**6, probe_timeout_s=1
    )
    capture = CameraCapture(
        "leak-test", f"rtsp://127.0.0.1:{sim.config.port}/nope", user=USER, password=PASSWORD,
        tracker=HealthTracker(now=time.monotonic()), options=fast,
    ).start()  # fmt: skip
    deadline = time.monotonic() + 90
    while capture.counters["opens"] < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    capture.stop()
    assert capture.join(5)
    assert capture.counters["opens"] >= 200, capture.counters
    assert capture.counters["errors"] == 0
    assert capture.tracker.reasons(time.monotonic())[0].code == "not_found"

    # 2. Real sessions: open, decode, close.
    for _ in range(5):
        session()

    py1, os1 = settle()
    rss1 = me.memory_info().rss
    assert py1 <= py0, f"python threads {py0} -> {py1}"
    assert os1 <= os0 + 1, f"OS threads {os0} -> {os1}"
    assert rss1 - rss0 < 40 * 2**20, f"RSS grew {(rss1 - rss0) / 2**20:.0f} MiB"
    print(f"threads {os0} -> {os1}, RSS +{(rss1 - rss0) / 2**20:.1f} MiB")
