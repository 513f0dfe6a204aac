"""Camera health against a real GStreamer RTSP server and the real TimescaleDB.

Six cameras at 320x180, 10 fps, with a 20-second day so the whole module runs through nights
and days. Cameras 1-5 get every fault (two rounds, faults in parallel to keep the module short);
camera 6 is never touched and must never raise an alarm.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ingest.rtsp.capture import CaptureOptions
from ingest.rtsp.worker import CameraWorker, WorkerConfig
from ioc.config import Settings
from ioc.db import cameras as repo
from ioc.db.connect import connect
from ioc.db.seed import load_geography
from ioc.domain.camera import Thresholds
from simulators.cameras.control import CameraSimulator, SimulatorConfig
from tests.conftest import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "ioc-cam", "cam-Secret-7f3a"
POOL, PREFIX = "it-faults", "itf-cam-"
DAY_S = 20.0
FAST = Thresholds(learn_s=3.0, stable_s=5.0, drop_window_s=20.0)
# fault -> (status, first reason)
EXPECTED = {
    "frozen": ("frozen", "frozen"),
    "black": ("black", "black"),
    "blurred": ("blurred", "blurred"),
    "covered": ("tampered", "covered"),
    "moved": ("moved", "moved"),
    "low_fps": ("low_fps", "low_fps"),
    "drops": ("unstable", "stream_drops"),
    "hang": ("offline", "no_video"),
    "auth": ("offline", "auth_failed"),
    "path": ("offline", "not_found"),
}
ROUNDS = (
    {1: "frozen", 2: "black", 3: "blurred", 4: "covered", 5: "moved"},
    {1: "low_fps", 2: "drops", 3: "hang", 4: "auth", 5: "path"},
)


@pytest.fixture(scope="module")
def sim(services: Settings) -> Iterator[CameraSimulator]:
    cfg = SimulatorConfig(
        port=free_port(), control_port=free_port(), cameras=6, width=320, height=180, fps=10,
        user=USER, password=PASSWORD, day_seconds=DAY_S, phase=0.0, drop_every=2.0,
    )  # fmt: skip
    with CameraSimulator(cfg, services.state_dir) as s:
        yield s


@pytest.fixture(scope="module")
async def camera_ids(services: Settings, sim: CameraSimulator) -> list[str]:
    conn = await connect(services.dsn)
    try:
        async with conn.transaction():
            return await repo.seed_cameras(
                conn, load_geography(services.areas_file), 6, 58,
                f"rtsp://127.0.0.1:{sim.config.port}", pool=POOL, id_prefix=PREFIX,
            )  # fmt: skip
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def worker(services: Settings, camera_ids: list[str]) -> AsyncIterator[CameraWorker]:
    w = CameraWorker(
        dsn=services.dsn,
        config=WorkerConfig(
            worker_id="it-faults-worker", pool=POOL, user=USER, password=PASSWORD,
            lease_s=10.0, health_interval_s=1.0, tick_s=0.25, thresholds=FAST,
            capture=CaptureOptions(backoff_base_s=0.3, backoff_cap_s=1.5, thumbnail_interval_s=2),
        ),
    )  # fmt: skip
    task = asyncio.create_task(w.run())
    yield w
    w.stop()
    await asyncio.wait_for(task, 15)


@pytest.fixture(scope="module")
async def db(services: Settings) -> AsyncIterator[Any]:
    conn = await connect(services.dsn, autocommit=True)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def light_log(
    services: Settings, worker: CameraWorker, camera_ids: list[str]
) -> AsyncIterator[list[tuple[float, float | None, str]]]:
    """(time, brightness, status) of the untouched camera 6, twice a second, all module long."""
    log: list[tuple[float, float | None, str]] = []
    conn = await connect(services.dsn, autocommit=True)

    async def poll() -> None:
        while True:
            last = (await states(conn, [camera_ids[5]])).get(camera_ids[5])
            if last is not None:
                log.append((time.monotonic(), last.get("brightness"), last["status"]))
            await asyncio.sleep(0.5)

    task = asyncio.create_task(poll())
    yield log
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await conn.close()


async def states(db: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    cur = await db.execute(
        "SELECT device_id, last FROM device_state WHERE device_id = ANY(%s)", (ids,)
    )
    return {r["device_id"]: r["last"] for r in await cur.fetchall()}


async def wait_all_ok(db: Any, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        st = await states(db, ids)
        if all(st.get(i, {}).get("status") == "ok" for i in ids):
            return st
        if time.monotonic() > deadline:
            pytest.fail(f"cameras not ok after {timeout} s: { {i: st.get(i) for i in ids} }")
        await asyncio.sleep(0.25)


async def test_cameras_are_seeded_without_credentials(db: Any, camera_ids: list[str]) -> None:
    cur = await db.execute(
        "SELECT id, kind, area_id, metadata FROM devices WHERE id = ANY(%s) ORDER BY id",
        (camera_ids,),
    )
    rows = await cur.fetchall()
    assert [r["id"] for r in rows] == [f"{PREFIX}{i:04d}" for i in range(1, 7)]
    assert {r["kind"] for r in rows} == {"camera"} and len({r["area_id"] for r in rows}) == 6
    assert all("@" not in r["metadata"]["rtsp_url"] for r in rows)
    assert rows[2]["metadata"]["rtsp_path"] == "/cam3"
    with pytest.raises(ValueError, match="credentials"):
        await repo.seed_cameras(db, None, 1, 1, "rtsp://admin:pw@10.0.0.1")  # type: ignore[arg-type]


async def test_healthy_cameras_come_up_with_baselines_and_thumbnails(
    db: Any, worker: CameraWorker, camera_ids: list[str], light_log: list[Any]
) -> None:
    st = await wait_all_ok(db, camera_ids, 30)
    assert worker.held == camera_ids
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cur = await db.execute(
            "SELECT count(*) AS n FROM camera_baselines WHERE device_id = ANY(%s)", (camera_ids,)
        )
        if (await cur.fetchone())["n"] == 6:
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail("baselines were not learned and stored")
    assert all(s["fps"] and s["fps"] >= 9 for s in (await states(db, camera_ids)).values()), st
    thumb = await repo.latest_thumbnail(db, camera_ids[0])
    assert thumb is not None and thumb[0][:2] == b"\xff\xd8" and len(thumb[0]) < 60_000
    cur = await db.execute(
        "SELECT count(*) AS n FROM camera_thumbnails WHERE device_id = ANY(%s)", (camera_ids,)
    )
    assert (await cur.fetchone())["n"] == 6  # one row per camera, updated in place
    cur = await db.execute(
        "SELECT count(*) AS n FROM camera_thumbnail_history WHERE device_id = ANY(%s)",
        (camera_ids,),
    )
    assert (await cur.fetchone())["n"] == 0  # history is off unless configured: latest only
    for _ in range(20):  # health rows come on their own cadence (1 s here)
        cur = await db.execute(
            "SELECT count(*) AS n FROM camera_health WHERE device_id = %s AND status = 'ok'",
            (camera_ids[5],),
        )
        if (await cur.fetchone())["n"] >= 1:
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail("no health row was written for a healthy camera")


async def _round(
    db: Any, sim: CameraSimulator, ids: list[str], faults: dict[int, str]
) -> list[str]:
    """Switch the faults on together; return a line per problem (empty: all went well)."""
    problems: list[str] = []
    cur = await db.execute("SELECT coalesce(max(id), 0) AS id FROM events")
    since = (await cur.fetchone())["id"]
    started = time.monotonic()
    for cam, fault in faults.items():
        sim.control.set_fault(cam, fault, True)
    seen: dict[int, float] = {}
    while len(seen) < len(faults) and time.monotonic() - started < 15:
        st = await states(db, ids)
        for cam, fault in faults.items():
            last = st[ids[cam - 1]]
            want = EXPECTED[fault]
            first = last["reasons"][0]["code"] if last["reasons"] else None
            if cam not in seen and (last["status"], first) == want:
                seen[cam] = time.monotonic() - started
        await asyncio.sleep(0.2)
    st = await states(db, ids)
    for cam, fault in faults.items():
        if cam not in seen:
            problems.append(f"{fault}: not detected in 15 s, state {st[ids[cam - 1]]}")
        elif seen[cam] > 10:
            problems.append(f"{fault}: detected after {seen[cam]:.1f} s (> 10 s)")
    print({faults[c]: round(t, 1) for c, t in seen.items()})
    for cam in faults:
        sim.control.clear(cam)
    cleared = time.monotonic()
    await wait_all_ok(db, [ids[c - 1] for c in faults], 25)
    print(f"recovered after {time.monotonic() - cleared:.1f} s")
    cur = await db.execute(
        "SELECT device_id, kind FROM events WHERE id > %s AND device_id = ANY(%s) ORDER BY id",
        (since, ids),
    )
    kinds: dict[str, list[str]] = {}
    for e in await cur.fetchall():
        kinds.setdefault(e["device_id"], []).append(e["kind"])
    for cam, fault in faults.items():
        want = [f"camera.{EXPECTED[fault][0]}", "camera.ok"]
        if kinds.get(ids[cam - 1]) != want:  # no detour through another status
            problems.append(f"{fault}: events {kinds.get(ids[cam - 1])}, expected {want}")
    return problems


async def test_every_fault_is_detected_with_its_reason_and_recovery_is_noticed(
    db: Any, sim: CameraSimulator, worker: CameraWorker, camera_ids: list[str]
) -> None:
    await wait_all_ok(db, camera_ids, 30)
    cur = await db.execute("SELECT coalesce(max(id), 0) AS id FROM events")
    since = (await cur.fetchone())["id"]
    problems = []
    for faults in ROUNDS:
        problems += await _round(db, sim, camera_ids, faults)
    assert not problems, "\n".join(problems)
    cur = await db.execute(
        "SELECT device_id, kind, severity, payload FROM events WHERE id > %s AND device_id = ANY(%s)"
        " ORDER BY id",
        (since, camera_ids),
    )
    evs = await cur.fetchall()
    kinds = {(e["device_id"], e["kind"]) for e in evs}
    for faults in ROUNDS:
        for cam, fault in faults.items():
            assert (camera_ids[cam - 1], f"camera.{EXPECTED[fault][0]}") in kinds, fault
            assert (camera_ids[cam - 1], "camera.ok") in kinds
    tamper = next(e for e in evs if e["kind"] == "camera.tampered")
    assert tamper["severity"] == "critical" and tamper["payload"]["previous"] == "ok"
    assert tamper["payload"]["reasons"][0]["confidence"] >= 0.5
    cur = await db.execute(
        "SELECT count(*) AS n FROM camera_health WHERE device_id = %s AND frozen AND status = 'frozen'",
        (camera_ids[0],),
    )
    assert (await cur.fetchone())["n"] >= 1


async def test_the_untouched_camera_never_alarmed_from_night_to_day(
    db: Any, camera_ids: list[str], light_log: list[tuple[float, float | None, str]]
) -> None:
    """Runs after the fault rounds: camera 6 has been watched through nights and days."""
    healthy = camera_ids[5]
    # A night-to-day change while it stayed ok: the darkest moment, then a much brighter one
    # (wait for the next sunrise if the module was quicker than that).
    deadline = time.monotonic() + DAY_S
    while True:
        seen = [(t, b) for t, b, st in light_log if b is not None]
        t_dark, dark = min(seen, key=lambda x: x[1])
        bright = max((b for t, b in seen if t > t_dark), default=dark)
        if bright - dark > 30:
            break
        assert time.monotonic() < deadline, f"no night-to-day change observed: {seen}"
        await asyncio.sleep(0.5)
    assert {st for _, _, st in light_log} == {"ok"}, light_log
    cur = await db.execute("SELECT kind FROM events WHERE device_id = %s", (healthy,))
    assert [r["kind"] for r in await cur.fetchall()] == []
    cur = await db.execute(
        "SELECT DISTINCT status FROM camera_health WHERE device_id = %s", (healthy,)
    )
    assert [r["status"] for r in await cur.fetchall()] == ["ok"]


async def test_no_credentials_in_the_database(
    db: Any, worker: CameraWorker, camera_ids: list[str]
) -> None:
    for sql in (
        "SELECT count(*) AS n FROM events WHERE payload::text LIKE %s",
        "SELECT count(*) AS n FROM device_state WHERE last::text LIKE %s",
        "SELECT count(*) AS n FROM camera_health WHERE reasons::text LIKE %s",
        "SELECT count(*) AS n FROM devices WHERE metadata::text LIKE %s",
    ):
        cur = await db.execute(sql, (f"%{PASSWORD}%",))
        assert (await cur.fetchone())["n"] == 0, sql
