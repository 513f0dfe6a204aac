"""``ioc bench fanout``: many websocket clients, a steady event rate, the real path.

Events are appended to the `events` table (each in its own transaction, as the engine and the
API do) → NOTIFY → `ioc api` (one process) → websocket clients held by a few client processes.
Reported: delivered / expected (must be 1.0), per-connection gaps (must be 0), p50/p99 delay
from the event's commit to its arrival, and the API process's CPU per delivered message. Then
a ramp: the event rate goes up by half at each short step until a step loses a message or its
p99 passes 1 s, for our stream and for the bare server; the highest rate each held is reported. In the
same run, a bare `websockets` broadcast server sends the same number of messages of the same
shape to the same number of clients; ``ratio`` = its CPU per delivered message / ours (how close
we are to the library's own cost). The baseline keeps the library's defaults (permessage-deflate
on); the stream runs with it off (IOC_WS_COMPRESSION), so a second baseline without deflate is
measured too and reported as ``ratio_vs_bare_nodeflate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from ioc.bench.common import bench_token, free_port, isolated_stack, spawn, wait_http
from ioc.config import Settings
from ioc.db import events
from ioc.db.connect import connect

CLIENT_PROCS = 4
RAMP_STEPS = 6  # 30, 45, 68, 102, 153, 230 events/s at most


def _clients(
    url: str, clients: int, seconds: float, token: str = ""
) -> list[subprocess.Popen[str]]:
    per = [clients // CLIENT_PROCS + (i < clients % CLIENT_PROCS) for i in range(CLIENT_PROCS)]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "ioc.bench.fanout_client", url, str(n), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "IOC_BENCH_TOKEN": token},  # not in argv: ps shows argv
        )
        for n in per
        if n
    ]


def _line(proc: subprocess.Popen[str], event: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process {proc.args!r} ended early")
        msg = json.loads(line)
        if msg.get("event") == event:
            return dict(msg)
    raise TimeoutError(event)


def _collect(procs: list[subprocess.Popen[str]], timeout: float) -> dict[str, Any]:
    received: list[int] = []
    latency: list[float] = []
    gaps, errors, watermarks = 0, [], []
    for p in procs:
        done = _line(p, "done", timeout)
        received += done["received"]
        watermarks += done.get("watermarks", [])
        latency += done["latency"]
        gaps += done["gaps"]
        errors += done["errors"]
        p.wait(30)
    return {
        "received": received,
        "latency": latency,
        "gaps": gaps,
        "errors": errors,
        "watermarks": watermarks,
    }


async def _produce(dsn: str, rate: float, seconds: float) -> tuple[int, int]:
    """Append events at ``rate``; returns (first id, last id)."""
    conn = await connect(dsn, autocommit=True)
    n, start, first, last = 0, time.monotonic(), 0, 0
    try:
        while time.monotonic() - start < seconds:
            n += 1
            async with conn.transaction():
                last = await events.append(conn, kind="bench.tick", payload={"n": n}, actor="bench")
            first = first or last
            await asyncio.sleep(max(0.0, n / rate - (time.monotonic() - start)))
    finally:
        await conn.close()
    return first, last


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000, 1)


@contextlib.contextmanager
def _api(bench: Settings, logs: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """One `ioc api` process for every step of the run: (process, host:port, bearer token)."""
    api = spawn(
        bench, "api", log=logs / "api.log", IOC_LOG_LEVEL="WARNING", IOC_WS_CLIENT_QUEUE_MAX="1000"
    )
    try:
        wait_http(f"http://127.0.0.1:{bench.api_port}/api/v1/health", api, 60)
        base = f"127.0.0.1:{bench.api_port}"
        yield api, base, asyncio.run(bench_token(bench, f"http://{base}"))
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(30)


def ours(
    bench: Settings,
    api: tuple[subprocess.Popen[bytes], str, str],
    clients: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    proc, base, token = api
    procs = _clients(f"ws://{base}/api/v1/stream", clients, seconds + 5, token)
    try:
        for p in procs:
            _line(p, "ready", 240)
        cpu = psutil.Process(proc.pid)
        before = sum(cpu.cpu_times()[:2])
        first, last = asyncio.run(_produce(bench.dsn, rate, seconds))
        time.sleep(2)
        cpu_s = sum(cpu.cpu_times()[:2]) - before
        got = _collect(procs, seconds + 120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    delivered = sum(got["received"])
    # A client owes only what came after its snapshot (a session subscribes just after the
    # handshake, so an event in between is already part of its snapshot).
    expected = sum(last - max(w, first - 1) for w in got["watermarks"])
    return {
        "produced": last - first + 1,
        "delivered": delivered,
        "expected": expected,
        "gaps": got["gaps"],
        "errors": got["errors"],
        "cpu_s": cpu_s,
        "p50_ms": _pct(got["latency"], 0.5),
        "p99_ms": _pct(got["latency"], 0.99),
    }


def _sustained(step: dict[str, Any], owed: int, rate: float, seconds: float) -> bool:
    """The producer reached the rate (a server that cannot keep up sends fewer events, not
    later ones), nothing was lost (every owed message arrived, no gap) and the stream kept up
    (p99 < 1 s)."""
    p99 = step["p99_ms"]
    return (
        step["produced"] >= 0.95 * rate * seconds
        and step["delivered"] >= owed
        and not step.get("gaps")
        and p99 is not None
        and p99 < 1000
    )


def highest_rate(
    run: Callable[[float], dict[str, Any]],
    owed: Callable[[dict[str, Any]], int],
    start: float,
    seconds: float,
) -> dict[str, Any]:
    """Raise the event rate by half each step until a step loses messages, falls behind or
    cannot be produced; the highest rate that held, and every step as measured."""
    steps, best, rate = [], None, start
    for _ in range(RAMP_STEPS):
        step = run(rate)
        ok = _sustained(step, owed(step), rate, seconds)
        steps.append(
            {
                "events_per_s": rate,
                "produced_per_s": round(step["produced"] / seconds, 1),
                "delivered_ratio": round(step["delivered"] / max(owed(step), 1), 5),
                "p99_ms": step["p99_ms"],
                "ok": ok,
            }
        )
        if not ok:
            break
        best, rate = rate, round(rate * 1.5)
    return {"highest_events_per_s": best, "ramp": steps}


def bare(clients: int, rate: float, seconds: float, deflate: bool = True) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ioc.bench.fanout_bare",
            str(port),
            str(clients),
            str(rate),
            str(seconds),
            "1" if deflate else "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _line(server, "listening", 30)
        procs = _clients(f"ws://127.0.0.1:{port}/", clients, seconds + 5)
        done = _line(server, "done", seconds + 240)
        got = _collect(procs, seconds + 120)
    finally:
        server.kill()
        server.wait(10)
    return {
        "produced": done["events"],
        "delivered": sum(got["received"]),
        "cpu_s": done["cpu_s"],
        "p50_ms": _pct(got["latency"], 0.5),
        "p99_ms": _pct(got["latency"], 0.99),
    }


def main(settings: Settings, quick: bool) -> dict[str, Any]:
    clients, rate, seconds = (200, 20.0, 15.0) if quick else (1000, 20.0, 30.0)
    step_s = 6.0 if quick else 10.0
    logs = Path(tempfile.mkdtemp(prefix="ioc-bench-fanout-"))
    with isolated_stack(settings, sensors=10) as bench, _api(bench, logs) as api:
        o = ours(bench, api, clients, rate, seconds)
        o_top = highest_rate(
            lambda r: ours(bench, api, clients, r, step_s), lambda st: st["expected"], 30.0, step_s
        )
    b = bare(clients, rate, seconds)
    plain = bare(clients, rate, seconds, deflate=False)
    # The bare server's ceiling, with deflate off as our stream runs (its cheaper setting).
    b_top = highest_rate(
        lambda r: bare(clients, r, step_s, deflate=False),
        lambda st: st["produced"] * clients,
        30.0,
        step_s,
    )
    ours_cost = o["cpu_s"] / max(o["delivered"], 1)
    bare_cost = b["cpu_s"] / max(b["delivered"], 1)
    plain_cost = plain["cpu_s"] / max(plain["delivered"], 1)

    def per_s(top: dict[str, Any]) -> int | None:
        best = top["highest_events_per_s"]
        return None if best is None else int(best * clients)

    return {
        "bench": "fanout",
        "clients": clients,
        "events_per_s": rate,
        "seconds": seconds,
        "delivered_ratio": round(o["delivered"] / max(o["expected"], 1), 5),
        "gaps": o["gaps"],
        "p50_ms": o["p50_ms"],
        "p99_ms": o["p99_ms"],
        "api_cpu_s": round(o["cpu_s"], 2),
        "api_cpu_us_per_msg": round(ours_cost * 1e6, 1),
        "bare_cpu_us_per_msg": round(bare_cost * 1e6, 1),
        "bare_p50_ms": b["p50_ms"],
        "bare_p99_ms": b["p99_ms"],
        "bare_delivered_ratio": round(b["delivered"] / max(b["produced"] * clients, 1), 5),
        # The baseline uses the library's defaults (permessage-deflate on); our stream has it
        # off (IOC_WS_COMPRESSION). The same comparison with the baseline's deflate off too:
        "bare_nodeflate_cpu_us_per_msg": round(plain_cost * 1e6, 1),
        "ratio_vs_bare_nodeflate": round(plain_cost / ours_cost, 3) if ours_cost else None,
        # The highest rate held for step_s with nothing lost and p99 < 1 s (None: not even the
        # first step); the ramp goes up by half a step at a time, so the true ceiling lies
        # between this and the next step.
        "highest_events_per_s": o_top["highest_events_per_s"],
        "highest_msgs_per_s": per_s(o_top),
        "bare_nodeflate_highest_events_per_s": b_top["highest_events_per_s"],
        "bare_nodeflate_highest_msgs_per_s": per_s(b_top),
        "ramp": o_top["ramp"],
        "bare_ramp": b_top["ramp"],
        "targets": {"p99_ms": 100, "ratio": 0.5},
        "ratio": round(bare_cost / ours_cost, 3) if ours_cost else None,
        "client_errors": o["errors"],
        "logs": str(logs),
    }
