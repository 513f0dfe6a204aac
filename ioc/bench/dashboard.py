"""``ioc bench dashboard``: how long the operator map takes to become interactive in headless
Chromium with 5,000 devices and 500 open alerts, against the same page with an empty map.

Method (one run, isolated services started for the benchmark, `ioc api` as a child process):
- empty: no devices, no alerts; then loaded: 5,000 traffic sensors reporting, 500 open alerts.
- Each measurement is a fresh browser context (nothing cached) loading ``/``; the page marks
  ``ioc-interactive`` once the outline, every device and the alert feed are drawn and the main
  thread is free again (a task after the next frame). The figure is that mark's time from
  navigation start; the median of N runs after one warm-up.
- Also reported: one redraw of all 5,000 markers unclustered at the province view (clustering
  switched off for it: the worst case a pan or zoom can cost), in ms.
``ratio`` = empty / loaded (1.0 would mean the data costs nothing). Target: loaded <= 2 s, ratio >= 0.3.

The same module fills a database with a realistic demo day (``populate_demo``) for the browser
tests and the screenshots in docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from ioc.bench.common import bearer, bench_token, isolated_stack, spawn
from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db import events
from ioc.db.cameras import seed_cameras, upsert_thumbnail
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed, site_id

DEVICES = 5000
WEEK = timedelta(days=7)
OPEN_ALERTS = 500
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TITLES = {
    "traffic.congestion": ("Ùn tắc giao thông", "Traffic congestion"),
    "traffic.slow_vs_usual": ("Chậm bất thường so với mọi khi", "Unusually slow for this hour"),
    "device.silent": ("Cảm biến mất tín hiệu", "Sensor silent"),
    "camera.unhealthy": ("Camera không hiển thị đúng", "Camera not showing the street"),
    "site.down": ("Mất kết nối khu vực (đường truyền/nguồn)", "Site link or power down"),
}
Conn = psycopg.AsyncConnection[Any]


# --------------------------------------------------------------------------- demo data ---


async def _open(
    conn: Conn,
    rule: str,
    device: str,
    severity: str,
    status: str,
    at: datetime,
    value: float | None = None,
    parent: int | None = None,
) -> int:
    title, title_en = TITLES[rule]
    row = await alerts_db.open_alert(
        conn,
        rule_id=rule,
        device_id=device,
        severity=severity,
        title=title,
        title_en=title_en,
        value=value,
        status=status,
        at=at,
        suppressed_by=f"alert:{parent}" if parent else None,
    )
    assert row is not None, f"{rule} already open on {device}"
    return int(row["id"])


def _load(hour: float) -> float:
    """Traffic load of a weekday in a Vietnamese town, 0..1, by local hour: two rush hours."""
    return min(
        1.0,
        0.12
        + 0.75 * math.exp(-(((hour - 7.3) / 1.1) ** 2))
        + 0.85 * math.exp(-(((hour - 17.4) / 1.4) ** 2))
        + (0.25 if 9 <= hour <= 16 else 0.0)
        - (0.08 if hour < 5 else 0.0),
    )


def thumbnail(index: int, *, dark: bool = False) -> bytes:
    """A 480x270 JPEG of camera ``index``'s simulated street (black when ``dark``)."""
    import cv2
    import numpy as np

    from simulators.cameras.scene import render_background

    img = render_background(index, 480, 270)
    x0 = (img.shape[1] - 480) // 2
    frame = img[:, x0 : x0 + 480]
    if dark:
        frame = (frame * 0.04).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 72])
    assert ok
    return bytes(buf.tobytes())


async def populate_demo(
    conn: Conn,
    geo_file: Path,
    *,
    now: datetime,
    hours: int = 24,
    cameras: int = 12,
    seed_value: int = 58,
    last_week: bool = False,
) -> dict[str, Any]:
    """A day of a small province: sensor readings with two rush hours, camera health and
    pictures, congestion now in Đồng Xoài, a site down in Lộc Ninh (its devices grouped under
    it), a black camera, a camera in maintenance. ``last_week``: the same hours a week earlier
    too (an ordinary day: no jam, no outage; camera checks every 5 minutes), so the leaders'
    page has last week to compare with. Expects ``seed`` to have run. One transaction is the
    caller's; returns the ids the tests look at."""
    geo = load_geography(geo_file)
    rng = random.Random(seed_value)
    tz = ZoneInfo(geo.timezone or "Asia/Ho_Chi_Minh")
    cams = await seed_cameras(conn, geo, cameras, seed_value, "rtsp://127.0.0.1:58554")
    # Every device registered when the data starts (availability counts a device from then).
    first = now - timedelta(hours=hours, minutes=5) - (WEEK if last_week else timedelta(0))
    await conn.execute("UPDATE devices SET created_at = %s WHERE created_at > %s", (first, first))
    await conn.execute(
        "UPDATE devices SET parent_id = 'site-' || area_id WHERE kind = 'camera' AND parent_id IS NULL"
    )
    cur = await conn.execute(
        "SELECT id, kind, area_id, metadata FROM devices WHERE kind <> 'site' ORDER BY id"
    )
    devices = list(await cur.fetchall())
    sensors = [d for d in devices if d["kind"] == "traffic_sensor"]
    by_area: dict[str, list[dict[str, Any]]] = {}
    for d in devices:
        by_area.setdefault(d["area_id"], []).append(d)
    down_area = "loc-ninh" if "loc-ninh" in by_area else sorted(by_area)[-1]
    busy_area = "dong-xoai" if "dong-xoai" in by_area else sorted(by_area)[0]
    congested = [d["id"] for d in by_area.get(busy_area, []) if d["kind"] == "traffic_sensor"][:4]
    down_since = now - timedelta(minutes=22)
    offline_sensor = next(d["id"] for d in sensors if d["area_id"] not in (down_area, busy_area))
    gaps = {
        d["id"]: rng.uniform(2, hours - 2) for d in rng.sample(sensors, max(1, len(sensors) // 12))
    }

    rows: list[tuple[Any, ...]] = []
    state: list[tuple[Any, ...]] = []
    for d in sensors:
        free = float(d["metadata"].get("free_flow_kmh") or 50)
        cap = int(d["metadata"].get("capacity_vph") or 1200)
        offset = timedelta(seconds=rng.uniform(5, 200))
        sensitivity = rng.uniform(0.15, 0.62)  # how much this road slows down at rush hour
        last = None
        for k in range(hours * 12, -1, -1):
            t = now - offset - timedelta(minutes=5 * k)
            if d["area_id"] == down_area and t > down_since:
                continue
            if d["id"] == offline_sensor and t > now - timedelta(hours=2):
                continue
            gap = gaps.get(d["id"])
            if gap is not None and gap <= (now - t).total_seconds() / 3600 < gap + 1.2:
                continue
            load = _load(t.astimezone(tz).hour + t.astimezone(tz).minute / 60)
            speed = free * (1 - sensitivity * load**1.6) * rng.uniform(0.9, 1.08)
            if d["id"] in congested and now - t < timedelta(minutes=35):
                speed = rng.uniform(6, 12)
                load = 1.4
            vehicles = max(0, int(cap / 12 * min(1.0, load * 1.05) * rng.uniform(0.85, 1.15)))
            occupancy = round(min(0.92, 0.03 + 0.12 * load * (free / max(speed, 5))), 3)
            rows.append((t, d["id"], int(t.timestamp()), vehicles, round(speed, 1), occupancy, 300))
            if last_week:  # the same road a week earlier, an ordinary day
                lw = t - WEEK
                load = _load(lw.astimezone(tz).hour + lw.astimezone(tz).minute / 60)
                v_lw = free * (1 - sensitivity * load**1.6) * rng.uniform(0.9, 1.08)
                n_lw = max(0, int(cap / 12 * min(1.0, load * 1.05) * rng.uniform(0.85, 1.15)))
                occ = round(min(0.92, 0.03 + 0.12 * load * (free / max(v_lw, 5))), 3)
                rows.append((lw, d["id"], int(lw.timestamp()), n_lw, round(v_lw, 1), occ, 300))
            last = (
                t,
                {
                    "speed_kmh": round(speed, 1),
                    "intensity": vehicles,
                    "occupancy": occupancy,
                    "interval_s": 300,
                },
            )
        if last is not None:
            state.append((d["id"], last[0], Jsonb(last[1]), d["id"] == offline_sensor))

    black, offline_cam, unknown_cam, maint_cam, blurred = cams[2], None, cams[-1], cams[4], cams[6]
    offline_cam = next(
        (c for c in cams if c in {d["id"] for d in by_area.get(down_area, [])}), cams[1]
    )
    health: list[tuple[Any, ...]] = []
    cam_state: list[tuple[Any, ...]] = []
    for i, cam in enumerate(cams, start=1):
        if cam == unknown_cam:
            continue
        reasons: list[dict[str, Any]] = []
        last_status, fps = "ok", 25.0
        for k in range(hours * 60, -1, -1):
            t = now - timedelta(minutes=k, seconds=17)
            status, reasons, fps = "ok", [], round(rng.uniform(23.5, 25.0), 1)
            if cam == black and k < 40:
                status, reasons = (
                    "black",
                    [{"code": "black", "detail": "mean 7", "confidence": 0.98}],
                )
            elif cam == offline_cam and t > down_since:
                status, reasons, fps = (
                    "offline",
                    [{"code": "unreachable", "detail": "timeout 3 s", "confidence": 1.0}],
                    0.0,
                )
            elif cam == blurred and k < 90:
                status, reasons = (
                    "blurred",
                    [{"code": "blurred", "detail": "sharpness 31 %", "confidence": 0.7}],
                )
            elif cam == cams[0] and 300 < k < 340:
                status, reasons, fps = (
                    "offline",
                    [{"code": "stream_lost", "detail": "", "confidence": 1.0}],
                    0.0,
                )
            health.append(
                (t, cam, status != "offline", fps if status != "offline" else None,
                 False, status == "black", 0.5, False, False, status, Jsonb(reasons))
            )  # fmt: skip
            if last_week and k % 5 == 0:
                health.append(
                    (t - WEEK, cam, True, 25.0, False, False, 0.5, False, False, "ok", Jsonb([]))
                )
            last_status = status
        cam_state.append(
            (cam, now - timedelta(seconds=17), Jsonb({"kind": "camera", "status": last_status, "reasons": reasons, "fps": fps, "connected": last_status != "offline"}))
        )  # fmt: skip
        taken = now - (
            timedelta(minutes=23) if cam == offline_cam else timedelta(seconds=rng.uniform(2, 9))
        )
        await upsert_thumbnail(conn, cam, thumbnail(i, dark=cam == black), taken, 480, 270)

    async with conn.cursor() as c:
        async with c.copy(
            "COPY traffic_observations (time, device_id, seq, intensity, average_speed, occupancy,"
            " interval_s) FROM STDIN"
        ) as copy:
            for r in rows:
                await copy.write_row(r)
        await c.executemany(
            """INSERT INTO device_state (device_id, last_seen, last, online, updated_at)
               VALUES (%s, %s, %s, CASE WHEN %s THEN false END, now())
               ON CONFLICT (device_id) DO UPDATE SET last_seen = excluded.last_seen,
                 last = excluded.last, online = excluded.online, updated_at = now()""",
            state,
        )
        await c.executemany(
            """INSERT INTO camera_health (time, device_id, connected, fps, frozen, black, blur,
                 tamper, scene_shift, status, reasons) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
            health,
        )
        await c.executemany(
            """INSERT INTO device_state (device_id, last_seen, last, updated_at)
               VALUES (%s, %s, %s, now()) ON CONFLICT (device_id) DO UPDATE
               SET last_seen = excluded.last_seen, last = excluded.last, updated_at = now()""",
            cam_state,
        )

    # Alerts, each with its events (the feed, the wall and the audit trail see them).
    site_alert = await _open(
        conn, "site.down", site_id(down_area), "critical", "firing", down_since, 1.0
    )
    for d in by_area.get(down_area, []):
        rule = "camera.unhealthy" if d["kind"] == "camera" else "device.silent"
        sev = "major" if d["kind"] == "camera" else "minor"
        await _open(
            conn,
            rule,
            d["id"],
            sev,
            "suppressed",
            down_since + timedelta(seconds=70),
            None,
            site_alert,
        )
    congestion = []
    for j, dev in enumerate(congested[:3]):
        congestion.append(
            await _open(
                conn,
                "traffic.congestion",
                dev,
                "major",
                "firing",
                now - timedelta(minutes=14 - 4 * j),
                9.5 + j,
            )
        )
    if congestion:
        await alerts_db.transition(
            conn,
            congestion[0],
            expected=("firing",),
            to="acknowledged",
            actor="operator",
            note="Đã báo CSGT Đồng Xoài",
        )
        await alerts_db.transition(conn, congestion[0], expected=("acknowledged",), to="acknowledged", kind="alert.assigned", actor="operator", assignee="Tổ CSGT số 2")  # fmt: skip
    black_alert = await _open(
        conn, "camera.unhealthy", black, "major", "firing", now - timedelta(minutes=38), 1.0
    )
    await _open(
        conn, "camera.unhealthy", blurred, "minor", "pending", now - timedelta(minutes=2), 1.0
    )
    slow = next(
        d["id"]
        for d in sensors
        if d["area_id"] not in (down_area, busy_area) and d["id"] != offline_sensor
    )
    await _open(
        conn, "traffic.slow_vs_usual", slow, "minor", "firing", now - timedelta(minutes=9), 0.42
    )
    await _open(
        conn, "device.silent", offline_sensor, "minor", "firing", now - timedelta(minutes=118), None
    )
    cur = await conn.execute(
        """INSERT INTO maintenance (device_id, starts_at, ends_at, reason, created_by)
           VALUES (%s, %s, %s, 'Thay ống kính, vệ sinh vỏ', 'operator') RETURNING id""",
        (maint_cam, now - timedelta(minutes=50), now + timedelta(minutes=70)),
    )
    mrow = await cur.fetchone()
    assert mrow is not None
    await events.append(conn, kind="maintenance.started", payload={"maintenance_id": mrow["id"]}, device_id=maint_cam, actor="operator")  # fmt: skip
    return {
        "cameras": cams,
        "black_camera": black,
        "black_alert": black_alert,
        "site_alert": site_alert,
        "down_area": down_area,
        "congested": congested,
        "congestion_alerts": congestion,
        "maintenance_camera": maint_cam,
        "offline_sensor": offline_sensor,
    }


async def populate_bench(conn: Conn, geo_file: Path, *, devices: int, open_alerts: int) -> None:
    """``devices`` sensors reporting now, ``open_alerts`` of them congested (firing)."""
    geo = load_geography(geo_file)
    await seed(conn, geo, sensors=devices, seed_value=58)
    await conn.execute(
        """INSERT INTO device_state (device_id, last_seen, last)
           SELECT id, now() - random() * interval '30 seconds',
                  jsonb_build_object('speed_kmh', 42.5, 'intensity', 7, 'occupancy', 0.2,
                                     'interval_s', 60)
           FROM devices WHERE kind = 'traffic_sensor'
           ON CONFLICT (device_id) DO NOTHING"""
    )
    cur = await conn.execute(
        "SELECT id FROM devices WHERE kind = 'traffic_sensor' ORDER BY id LIMIT %s", (open_alerts,)
    )
    now = datetime.now(UTC)
    for i, r in enumerate(await cur.fetchall()):
        sev = ("critical", "major", "major", "minor")[i % 4]
        await _open(
            conn, "traffic.congestion", r["id"], sev, "firing", now - timedelta(seconds=i), 9.0
        )


# ----------------------------------------------------------------------------- browser ---


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def measure(url: str, token: str, runs: int, *, devices: int, alerts: int) -> dict[str, Any]:
    """Median time (ms) from navigation start to the page's ``ioc-interactive`` mark, for a
    signed-in user (the session cookie set as the login page would)."""
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    redraws: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(runs + 1):  # the first is a warm-up
                ctx = browser.new_context(viewport={"width": 1600, "height": 900})
                ctx.add_cookies([{"name": "ioc_access", "value": token, "url": url + "/"}])
                page = ctx.new_page()
                page.goto(url + "/", wait_until="commit")
                page.wait_for_function(
                    "() => window.iocState && window.iocState.interactive", timeout=120_000
                )
                got = page.evaluate(
                    """() => ({
                        t: performance.getEntriesByName('ioc-interactive')[0].startTime,
                        devices: window.iocState.devices.size,
                        alerts: window.iocState.alerts.size,
                    })"""
                )
                if got["devices"] != devices or got["alerts"] != alerts:
                    raise RuntimeError(
                        f"the page shows {got}, expected {devices} devices, {alerts} alerts"
                    )
                if devices:
                    drawn = page.evaluate(
                        """() => {
                                const o = window.iocState.layer.options;
                                const keep = [o.clusterBelowZoom, o.denseBelowZoom];
                                o.clusterBelowZoom = o.denseBelowZoom = 0;
                                const t0 = performance.now(); window.iocState.layer._draw();
                                const dt = performance.now() - t0;
                                [o.clusterBelowZoom, o.denseBelowZoom] = keep;
                                return {dt, n: window.iocState.layer._hits.length}; }"""
                    )
                    if drawn["n"] < devices:
                        raise RuntimeError(f"the redraw drew {drawn['n']} of {devices} markers")
                    redraws.append(float(drawn["dt"]))
                if i:
                    times.append(float(got["t"]))
                ctx.close()
        finally:
            browser.close()
    return {
        "median_ms": round(statistics.median(times)),
        "runs_ms": [round(t) for t in times],
        "redraw_ms": round(statistics.median(redraws), 1) if redraws else None,
    }


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    runs = 3 if quick else 7
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-dashboard-"))
    with isolated_stack(settings, sensors=0) as bench:

        async def prepare(loaded: bool) -> None:
            conn = await connect(bench.dsn)
            async with conn.transaction():
                if loaded:
                    await populate_bench(
                        conn, bench.areas_file, devices=DEVICES, open_alerts=OPEN_ALERTS
                    )
                else:
                    await conn.execute("DELETE FROM devices")  # the seed's sites: truly empty
            await conn.close()

        asyncio.run(prepare(False))
        api = spawn(bench, "api", log=logs / "api.log")
        url = f"http://127.0.0.1:{bench.api_port}"
        try:
            _wait_http(url + "/api/v1/health", 60)
            token = asyncio.run(bench_token(bench, url))
            empty = measure(url, token, runs, devices=0, alerts=0)
            asyncio.run(prepare(True))
            started = time.perf_counter()
            req = urllib.request.Request(url + "/api/v1/devices", headers=bearer(token))
            with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 (our API)
                r.read()
            devices_api_ms = (time.perf_counter() - started) * 1000
            loaded = measure(url, token, runs, devices=DEVICES, alerts=OPEN_ALERTS)
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(30)
    return {
        "bench": "dashboard",
        "devices": DEVICES,
        "open_alerts": OPEN_ALERTS,
        "runs": runs,
        "empty_interactive_ms": empty["median_ms"],
        "loaded_interactive_ms": loaded["median_ms"],
        "loaded_runs_ms": loaded["runs_ms"],
        "empty_runs_ms": empty["runs_ms"],
        "redraw_all_markers_ms": loaded["redraw_ms"],
        "devices_api_ms": round(devices_api_ms),
        "target_loaded_ms": 2000,
        "ratio": round(empty["median_ms"] / max(1, loaded["median_ms"]), 3),
        "logs": str(logs),
    }
