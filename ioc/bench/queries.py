"""``ioc bench queries``: the leaders' summary and a 7-day area statistics query, from the
rollups and from the raw hypertable, at province scale; the summary endpoint the /leader page
reads, over HTTP; and what maintaining the rollups costs the ingest path.

Method (one run, isolated services started for the benchmark):
- Data: N sensors at one reading a minute for D days (full: 2,000 × 30 days ≈ 86 M rows;
  --quick: 40 × 15 days ≈ 0.86 M), one camera per ten sensors with a health check a minute, a
  maintenance window and a few alerts. Generated server-side, one INSERT ... SELECT over
  generate_series per day, two days at a time, with the raw table's indexes dropped and
  rebuilt after (generation is not what is measured). Received 2 s after observed.
- Every device has a live state row (device_state) and a few alerts are open, as in the field.
- The rollups are built by the maintainer of ``ioc rollups`` catching up (its build rate is
  reported), then both queries run repeatedly against the rollups (RollupSource) and against
  the raw tables (RawSource) with identical inputs; the answers must agree (every figure,
  floats to 1e-9 relative) or the benchmark fails. The leaders' summary is
  ``ioc.rollups.leader.leader_figures``: the very call ``GET /api/v1/summary/leader`` makes
  (the route only rounds and shapes it), live parts included.
- Then ``ioc api`` serves ``GET /api/v1/summary/leader`` to a signed-in leader, as the page
  asks for it: ``leader_api_p50_ms`` / ``_p95_ms`` are whole HTTP requests (sign-in checks,
  the queries, JSON), and its answer must carry the same rolled-up figures.
- ``ratio`` = raw p50 / rollup p50 of the slower-to-improve of the two queries (the smaller
  speed-up); both are reported.
- Ingest cost: readings written as fast as the ingest batch writer goes (``write_batch``,
  batches of 500, every sensor reporting many times a minute: a burst), first with no rollup
  maintenance, then with ``ioc rollups`` running beside it (1 s ticks) on the same 2 cores;
  and how long after the last write the rollups had caught up. The steady-state cost is the
  build's database time per 1,000 readings (one reading per sensor-minute, as in the field).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog

from ioc.bench.common import bench_token, isolated_stack, spawn, wait_for_line, wait_http
from ioc.config import Settings
from ioc.db.connect import connect
from ioc.db.observations import write_batch
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.rollups import leader, read
from ioc.rollups.config import RollupSettings
from ioc.rollups.levels import HOUR, floor
from ioc.rollups.maintain import Maintainer
from ioc.rollups.raw import RawSource

T = TypeVar("T")
log = structlog.get_logger("ioc.bench.queries")
Conn = psycopg.AsyncConnection[Any]

# Traffic: a morning and an evening rush (local time), one sensor in ten jams at rush hour,
# and ~1 % of sensor-hours missing (an outage), so availability and congestion are not flat.
TRAFFIC = """
INSERT INTO traffic_observations (time, device_id, seq, intensity, average_speed, occupancy,
                                  interval_s, received_at)
WITH ts AS MATERIALIZED (
    SELECT t, extract(epoch FROM t)::bigint AS ep,
           exp(-power(extract(hour FROM t AT TIME ZONE %(tz)s) - 7.5, 2) / 2)
         + exp(-power(extract(hour FROM t AT TIME ZONE %(tz)s) - 17.5, 2) / 2) AS rush
    FROM generate_series(%(t0)s::timestamptz, %(t1)s::timestamptz - interval '1 minute',
                         interval '1 minute') t),
dv AS MATERIALIZED (
    SELECT id, row_number() OVER (ORDER BY id) AS n,
           coalesce((metadata->>'free_flow_kmh')::float8, 50) AS ff,
           CASE WHEN abs(hashtext(id)) %% 10 = 0 THEN 0.8 ELSE 0.35 END AS slow
    FROM devices WHERE kind = 'traffic_sensor')
SELECT ts.t, dv.id, ts.ep / 60, (8 + 10 * ts.rush + 3 * random())::int,
       greatest(3, dv.ff * (1 - dv.slow * ts.rush) + 4 * (random() - 0.5))::real,
       least(1, 0.05 + 0.5 * ts.rush + 0.05 * random())::real, 60, ts.t + interval '2 seconds'
FROM ts CROSS JOIN dv
WHERE (dv.n * 7919 + ts.ep / 3600 * 104729) %% 97 <> 0"""

CAMERAS = """
INSERT INTO camera_health (time, device_id, connected, fps, frozen, black, blur, tamper,
                           scene_shift, status, reasons)
WITH ts AS MATERIALIZED (
    SELECT t, extract(epoch FROM t)::bigint AS ep
    FROM generate_series(%(t0)s::timestamptz, %(t1)s::timestamptz - interval '1 minute',
                         interval '1 minute') t),
cams AS MATERIALIZED (
    SELECT id, row_number() OVER (ORDER BY id) AS n FROM devices WHERE kind = 'camera'),
st AS (
    SELECT ts.t, cams.id,
           CASE WHEN (cams.n * 31 + ts.ep / 3600) %% 53 = 0 THEN 'offline'
                WHEN random() < 0.01 THEN 'black' ELSE 'ok' END AS status
    FROM ts CROSS JOIN cams)
SELECT t, id, status <> 'offline', CASE WHEN status = 'offline' THEN NULL ELSE 24.5 END,
       false, status = 'black', 120, false, false, status, '[]'::jsonb
FROM st"""


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


async def _timed(fn: Callable[[], Awaitable[T]], n: int) -> tuple[list[float], T]:
    times, result = [], None
    for _ in range(n):
        started = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - started)
    assert result is not None
    return times, result


def agree(a: Any, b: Any, path: str = "") -> None:
    """Assert two figures are the same: equal, floats to 1e-9 relative (sums are added in a
    different order from rollups than from raw rows)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            agree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            agree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# ----------------------------------------------------------------------------- data ---


async def _indexes(conn: Conn, table: str) -> list[tuple[str, str]]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND schemaname = "
            "'public'",
            (table,),
        )
        return [(r["indexname"], r["indexdef"]) for r in await cur.fetchall()]


async def generate(dsn: str, *, days: int, end: datetime, tz: str) -> dict[str, Any]:
    """Fill [end - days, end) for every registered sensor and camera. Returns counts/times."""
    conn = await connect(dsn, autocommit=True)
    saved = [(t, await _indexes(conn, t)) for t in ("traffic_observations", "camera_health")]
    for _, idx in saved:
        for name, _def in idx:
            await conn.execute(f'DROP INDEX "{name}"')
    queue: asyncio.Queue[datetime] = asyncio.Queue()
    for d in range(days):
        queue.put_nowait(end - timedelta(days=days - d))

    async def worker(seed: float) -> None:
        c = await connect(dsn, autocommit=True)
        await c.execute("SELECT setseed(%s)", (seed,))
        while not queue.empty():
            t0 = queue.get_nowait()
            p = {"t0": t0, "t1": min(end, t0 + timedelta(days=1)), "tz": tz}
            await c.execute(TRAFFIC, p)
            await c.execute(CAMERAS, p)
        await c.close()

    started = time.perf_counter()
    await asyncio.gather(worker(0.58), worker(0.11))
    generated = time.perf_counter() - started
    started = time.perf_counter()
    for _, idx in saved:
        for _name, definition in idx:
            await conn.execute(definition)
    await conn.execute("ANALYZE")
    indexed = time.perf_counter() - started
    row = await (await conn.execute("SELECT count(*) AS n FROM traffic_observations")).fetchone()
    await conn.close()
    n = int(row["n"]) if row else 0
    return {"rows": n, "generate_s": generated, "index_s": indexed}


async def setup_fleet(dsn: str, *, sensors: int, days: int, end: datetime) -> None:
    """Cameras (one per ten sensors, beside them), every device registered when the data
    starts with a live state row, a 2-hour maintenance window last week in one area, a few
    alerts today (ten still open) and last week. (Availability is rolled up from the first data on: a device registered earlier
    would count as down before it in the raw reference, and the answers would differ.)"""
    conn = await connect(dsn, autocommit=True)
    created = end - timedelta(days=days)
    await conn.execute(
        """INSERT INTO devices (id, kind, name, area_id, lat, lon, created_at)
           SELECT 'cam-' || lpad(n::text, 5, '0'), 'camera', 'Camera ' || n, d.area_id,
                  d.lat, d.lon, %(c)s
           FROM (SELECT area_id, lat, lon, row_number() OVER (ORDER BY id) AS n
                 FROM devices WHERE kind = 'traffic_sensor') d
           WHERE d.n %% 10 = 1""",
        {"c": created},
    )
    await conn.execute("UPDATE devices SET created_at = %s", (created,))
    week = end - timedelta(days=7)
    await conn.execute(
        """INSERT INTO maintenance (area_id, starts_at, ends_at, reason, created_by)
           VALUES ('dong-xoai', %(s)s, %(e)s, 'benchmark window', 'bench')""",
        {"s": week - timedelta(hours=3), "e": week - timedelta(hours=1)},
    )
    await conn.execute(
        """INSERT INTO device_state (device_id, last_seen, last, updated_at)
           SELECT id, %(t)s, CASE kind WHEN 'camera' THEN '{"status": "ok"}'::jsonb
                                  ELSE '{"interval_s": 60}'::jsonb END, %(t)s
           FROM devices WHERE kind IN ('traffic_sensor', 'camera')""",
        {"t": end},
    )
    await conn.execute(
        """INSERT INTO alerts (rule_id, device_id, area_id, severity, status, title, title_en,
                               started_at, fired_at)
           SELECT 'bench.open', id, area_id, 'minor', 'firing', 'x', 'x', %(at)s, %(at)s
           FROM devices WHERE kind = 'traffic_sensor' ORDER BY id DESC LIMIT 10""",
        {"at": end - timedelta(minutes=30)},
    )
    for i, at in enumerate((end - timedelta(hours=2), week - timedelta(hours=2))):
        await conn.execute(
            """INSERT INTO alerts (rule_id, device_id, area_id, severity, status, title,
                                   title_en, started_at)
               SELECT 'bench', id, area_id, 'major', 'resolved', 'x', 'x', %(at)s
               FROM devices WHERE kind = 'traffic_sensor' ORDER BY id LIMIT %(n)s""",
            {"at": at, "n": 3 + i},
        )
    await conn.close()


# -------------------------------------------------------------------------- ingest ---


def _batch(sensors: list[str], seq: int, size: int = 500) -> list[wire.TrafficObservation]:
    now = datetime.now(UTC)
    return [
        wire.TrafficObservation(
            device_id=sensors[i % len(sensors)],
            seq=seq + i // len(sensors),
            observed_at=now - timedelta(milliseconds=size - i),
            intensity=9,
            average_speed=41.5,
            occupancy=0.2,
            interval_s=60,
        )
        for i in range(size)
    ]


async def ingest_rate(dsn: str, sensors: list[str], seconds: float, seq0: int) -> tuple[float, int]:
    """Readings a second through write_batch for ``seconds``: 500 a batch, one commit each, as
    the ingest worker writes them. Returns (rate, readings)."""
    conn = await connect(dsn)
    n, seq = 0, seq0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = _batch(sensors, seq)
        seq += len(batch) // len(sensors) + 1
        async with conn.transaction():
            await write_batch(conn, batch, [])
        n += len(batch)
    elapsed = time.perf_counter() - started
    await conn.close()
    return n / elapsed, n


async def _caught_up(dsn: str, limit_s: float = 120) -> float:
    """Seconds until the rollups have rolled up everything received so far."""
    conn = await connect(dsn, autocommit=True)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < limit_s:
            row = await (
                await conn.execute(
                    """SELECT (SELECT watermark FROM rollup_state WHERE name = 'traffic')
                              >= (SELECT max(received_at) FROM traffic_observations) AS done"""
                )
            ).fetchone()
            if row and row["done"]:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
        raise RuntimeError("the rollups did not catch up within 120 s")
    finally:
        await conn.close()


# ------------------------------------------------------------------- the endpoint ---


async def _leader_api(
    bench: Settings, logs: Path, fixed: leader.LeaderFigures, n: int
) -> dict[str, Any]:
    """``GET /api/v1/summary/leader`` from ``ioc api``, as the page asks for it (a signed-in
    leader of the province), timed over HTTP; its rolled-up figures must be the ones above."""
    import json
    import urllib.request

    log_file = logs / "api.log"
    proc = spawn(bench, "api", log=log_file)
    url = f"http://127.0.0.1:{bench.api_port}"
    try:
        await asyncio.to_thread(wait_http, url + "/api/v1/health", proc, 60)
        token = await bench_token(bench, url, "bench-leader", role="leader")
        req = urllib.request.Request(
            url + "/api/v1/summary/leader", headers={"Authorization": f"Bearer {token}"}
        )

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (our own API)
                return dict(json.loads(r.read()))

        await asyncio.to_thread(get)  # warm-up: the pool's first connection
        times, body = [], {}
        for _ in range(n):
            started = time.perf_counter()
            body = await asyncio.to_thread(get)
            times.append(time.perf_counter() - started)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    got = (
        datetime.fromisoformat(body["traffic_through"]),
        datetime.fromisoformat(body["day_start"]),
        body["kpis"]["vehicles_today"]["value"],
    )
    want = (fixed.traffic_through, fixed.day_start, round(fixed.scope.vehicles.value or 0.0))
    if got[:2] == want[:2] and got != want:  # (not across a local midnight)
        raise AssertionError(f"GET /api/v1/summary/leader says {got}, the figures {want}")
    return {
        "leader_api_p50_ms": round(1000 * statistics.median(times), 2),
        "leader_api_p95_ms": round(1000 * _pct(times, 0.95), 2),
        "leader_api_runs": n,
    }


# --------------------------------------------------------------------------- main ---


async def run(bench: Settings, *, sensors: int, days: int, quick: bool, logs: Path) -> Any:
    tz = load_geography(bench.areas_file).timezone or "Asia/Ho_Chi_Minh"
    out: dict[str, Any] = {"bench": "queries", "sensors": sensors, "days": days}
    end = floor(datetime.now(UTC), timedelta(minutes=1))
    await setup_fleet(bench.dsn, sensors=sensors, days=days, end=end)
    gen = await generate(bench.dsn, days=days, end=end, tz=tz)
    log.info("generated", rows=gen["rows"], seconds=round(gen["generate_s"] + gen["index_s"]))
    out["rows"] = gen["rows"]
    out["generate_rows_s"] = round(gen["rows"] / gen["generate_s"])

    conn = await connect(bench.dsn, autocommit=True)
    build = RollupSettings(lag_seconds=0, step_minutes=24 * 60)
    started = time.perf_counter()
    built = await Maintainer(build).catch_up(conn)
    out["rollup_build_s"] = round(time.perf_counter() - started, 1)
    out["rollup_build_rows_s"] = round(built.readings / max(out["rollup_build_s"], 1e-6))
    # At one reading per sensor-minute every reading is its own 1-minute bucket: the cost of
    # keeping up with a live fleet is this much database time per 1,000 readings.
    out["rollup_ms_per_1000_readings"] = round(1e6 * out["rollup_build_s"] / max(gen["rows"], 1), 1)
    out["rollup_seconds_by_table"] = {k: round(v, 1) for k, v in built.seconds.items()}
    await conn.execute("ANALYZE")
    log.info("rollups built", seconds=out["rollup_build_s"])

    raw, n_fast, n_raw = RawSource(), (20 if quick else 50), (3 if quick else 3)
    now = datetime.now(UTC)
    fixed = await leader.leader_figures(conn, tz=tz, now=now)
    reference = await leader.leader_figures(
        conn,
        tz=tz,
        now=now,
        source=raw,
        through=(fixed.traffic_through, fixed.availability_through),
    )
    agree(asdict(fixed), asdict(reference))
    log.info("leader figures agree")
    fast, _ = await _timed(lambda: leader.leader_figures(conn, tz=tz), n_fast)
    slow, _ = await _timed(
        lambda: leader.leader_figures(
            conn,
            tz=tz,
            now=now,
            source=raw,
            through=(fixed.traffic_through, fixed.availability_through),
        ),
        n_raw,
    )
    root = fixed.root.id
    h1 = floor(now, HOUR.width)
    args = {"area_id": root, "step": "1h", "start": h1 - timedelta(days=7), "end": h1, "tz": tz}
    a_fast, a = await _timed(lambda: read.area_stats(conn, **args), n_fast)  # type: ignore[arg-type]
    a_slow, b = await _timed(lambda: read.area_stats(conn, source=raw, **args), n_raw)  # type: ignore[arg-type]
    agree(asdict(a), asdict(b))
    out["answers_agree"] = True
    for name, f, s in (("leader", fast, slow), ("area_7d", a_fast, a_slow)):
        out[f"{name}_rollup_p50_ms"] = round(1000 * statistics.median(f), 2)
        out[f"{name}_rollup_p95_ms"] = round(1000 * _pct(f, 0.95), 2)
        out[f"{name}_raw_p50_ms"] = round(1000 * statistics.median(s), 1)
        out[f"{name}_raw_p95_ms"] = round(1000 * _pct(s, 0.95), 1)
        out[f"{name}_ratio"] = round(statistics.median(s) / statistics.median(f), 1)
    out["runs"] = {"rollup": n_fast, "raw": n_raw}
    out.update(await _leader_api(bench, logs, fixed, 3 * n_fast))

    # Ingest with and without rollup maintenance beside it.
    ids = [
        r["id"]
        for r in await (
            await conn.execute("SELECT id FROM devices WHERE kind = 'traffic_sensor' ORDER BY id")
        ).fetchall()
    ]
    seconds = 5.0 if quick else 30.0
    live = RollupSettings(lag_seconds=0.5, step_minutes=60)
    await Maintainer(live).catch_up(conn)
    without, n1 = await ingest_rate(bench.dsn, ids, seconds, 10**9)
    await asyncio.sleep(1.0)  # past the lag: every reading written is due
    await Maintainer(live).catch_up(conn)
    role_log = logs / "rollups.log"
    proc = spawn(
        bench,
        "rollups",
        log=role_log,
        IOC_ROLLUP_INTERVAL_SECONDS="1",
        IOC_ROLLUP_LAG_SECONDS="0.5",
    )
    try:
        wait_for_line(proc, role_log, "rollups running", 30)
        with_, n2 = await ingest_rate(bench.dsn, ids, seconds, 2 * 10**9)
        out["rollups_caught_up_after_s"] = round(await _caught_up(bench.dsn), 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    await conn.close()
    out["ingest_seconds"] = seconds
    out["ingest_readings"] = {"without": n1, "with": n2}
    out["ingest_rows_s_without_rollups"] = round(without)
    out["ingest_rows_s_with_rollups"] = round(with_)
    out["ingest_cost_pct"] = round(100 * (1 - with_ / without), 1)
    out["ratio"] = min(out["leader_ratio"], out["area_7d_ratio"])
    out["logs"] = str(logs)
    return out


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    sensors, days = (40, 15) if quick else (2000, 30)
    # Another size (e.g. the full fleet over fewer days): IOC_BENCH_SENSORS, IOC_BENCH_DAYS.
    sensors = int(os.environ.get("IOC_BENCH_SENSORS", sensors))
    days = int(os.environ.get("IOC_BENCH_DAYS", days))
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-queries-"))
    with isolated_stack(settings, sensors=sensors) as bench:
        result: dict[str, Any] = asyncio.run(
            run(bench, sensors=sensors, days=days, quick=quick, logs=logs)
        )
    return result
