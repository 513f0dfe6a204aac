"""The live stream across processes and failures: two API processes, a client away for 30 s
under load, an API process killed mid-stream. Every client's events must equal the table's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import connect as ws_connect

from ioc.bench.common import bearer, ensure_user, login
from ioc.config import Settings
from tests.conftest import env_for, free_port
from tests.integration.test_stream import make_alert

pytestmark = pytest.mark.integration


class Api:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log, self.port = settings, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "api"],
            env=env_for(self.settings, IOC_API_PORT=str(self.port), IOC_LOG_LEVEL="WARNING"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/api/v1/health", timeout=1
                ):
                    break
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.2)

        if not self.headers:
            with ThreadPoolExecutor(1) as pool:  # no event loop of our own here
                password = pool.submit(
                    asyncio.run, ensure_user(self.settings.dsn, "tester")
                ).result()
            self.headers = bearer(login(f"http://127.0.0.1:{self.port}", "tester", password))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(20)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/stream"


@pytest.fixture
def apis(services: Settings, tmp_path: Path) -> Iterator[list[Api]]:
    pair = [Api(services, tmp_path / f"api{i}.log") for i in range(2)]
    for api in pair:
        api.start()
    yield pair
    for api in pair:
        if api.proc is not None and api.proc.poll() is None:
            api.kill(signal.SIGTERM)


class Client:
    """Collects every event; reconnects with ``since`` when told to or when dropped."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.events, self.last, self.snapshots = url, [], None, 0  # type: ignore[var-annotated]
        self.headers = headers

    async def run(self, until: asyncio.Event, pause: asyncio.Event | None = None) -> None:
        while not until.is_set():
            url = self.url + (f"?since={self.last}" if self.last is not None else "")
            try:
                async with ws_connect(url, open_timeout=5, additional_headers=self.headers) as ws:
                    while not until.is_set() and not (pause and pause.is_set()):
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except TimeoutError:
                            continue
                        if msg["type"] == "snapshot":
                            self.snapshots += 1
                            self.last = msg["watermark"]
                        elif msg["type"] == "event":
                            self.events.append(msg["id"])
                            self.last = msg["id"]
            except (OSError, Exception):  # noqa: BLE001 - server gone: try again
                await asyncio.sleep(0.3)
            while pause and pause.is_set() and not until.is_set():
                await asyncio.sleep(0.1)


async def table_ids(settings: Settings, after: int, upto: int) -> list[int]:
    with psycopg.connect(settings.dsn) as conn:
        rows = conn.execute(
            "SELECT id FROM events WHERE id > %s AND id <= %s ORDER BY id", (after, upto)
        ).fetchall()
    return [r[0] for r in rows]


async def watermark(settings: Settings) -> int:
    with psycopg.connect(settings.dsn) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    assert row is not None
    return int(row[0])


async def produce(settings: Settings, seconds: float, tag: str) -> None:
    """About 20 events a second (an alert opened, fired and resolved: three events)."""
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        await make_alert(settings, f"ts-{n % 60 + 1:05d}", f"test.{tag}-{n}")
        n += 1
        await asyncio.sleep(0.15)


@contextlib.asynccontextmanager
async def clients(*cs: tuple[Client, asyncio.Event | None]) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop, pause)) for c, pause in cs]
    await asyncio.sleep(1.0)
    try:
        yield stop
    finally:
        await asyncio.sleep(2.0)  # let the last events arrive
        stop.set()
        await asyncio.gather(*tasks)


def assert_exact(got: list[int], expected: list[int]) -> None:
    assert got == sorted(got), "out of order"
    assert len(got) == len(set(got)), "duplicates"
    window = [i for i in got if expected and expected[0] <= i <= expected[-1]]
    assert window == expected, f"missed {sorted(set(expected) - set(window))[:10]}"


async def test_two_api_processes_each_deliver_everything(
    services: Settings, apis: list[Api]
) -> None:
    start = await watermark(services)
    a, b = Client(apis[0].url, apis[0].headers), Client(apis[1].url, apis[1].headers)
    async with clients((a, None), (b, None)):
        await produce(services, 4, "two-apis")
    expected = await table_ids(services, start, await watermark(services))
    assert len(expected) >= 30
    assert_exact(a.events, expected)
    assert_exact(b.events, expected)


async def test_client_away_30_s_under_load_resumes_exactly(
    services: Settings, apis: list[Api]
) -> None:
    start = await watermark(services)
    steady, sleeper, pause = (
        Client(apis[0].url, apis[0].headers),
        Client(apis[0].url, apis[0].headers),
        asyncio.Event(),
    )
    async with clients((steady, None), (sleeper, pause)):
        producer = asyncio.create_task(produce(services, 36, "away"))
        await asyncio.sleep(3)
        pause.set()  # the laptop sleeps
        await asyncio.sleep(30)
        pause.clear()  # and wakes up: resumes with the last id it saw
        await producer
    expected = await table_ids(services, start, await watermark(services))
    assert len(expected) >= 300
    assert_exact(steady.events, expected)
    assert_exact(sleeper.events, expected)
    assert sleeper.snapshots == 1  # resumed from its id, no fresh snapshot needed


async def test_api_killed_mid_stream_client_resumes_on_restart(
    services: Settings, apis: list[Api]
) -> None:
    start = await watermark(services)
    c = Client(apis[0].url, apis[0].headers)
    async with clients((c, None)):
        producer = asyncio.create_task(produce(services, 8, "api-kill"))
        await asyncio.sleep(2)
        apis[0].kill(signal.SIGKILL)
        await asyncio.sleep(2)
        await asyncio.to_thread(apis[0].start)
        await producer
    expected = await table_ids(services, start, await watermark(services))
    assert_exact(c.events, expected)


async def test_ping_pong_snapshot_devices_and_min_severity(
    services: Settings, apis: list[Api]
) -> None:
    async with ws_connect(
        apis[0].url + "?min_severity=critical", additional_headers=apis[0].headers
    ) as ws:
        snap = json.loads(await ws.recv())
        assert snap["type"] == "snapshot" and snap["devices"]
        assert {"id", "status", "reason"} <= set(snap["devices"][0])
        await ws.send(json.dumps({"type": "ping", "echo": 7}))
        before = await watermark(services)
        await make_alert(services, "ts-00050", "test.minsev")  # severity major: filtered out
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if msg["type"] == "pong":
                assert msg["echo"] == 7
                break
        else:
            raise AssertionError("no pong")
        with contextlib.suppress(TimeoutError):
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 2))
                assert not (msg["type"] == "event" and msg["id"] > before), msg
