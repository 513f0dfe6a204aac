"""What benchmarks share: an isolated copy of the local services, and child `ioc` processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ioc.config import METRICS_PORT_FIELDS, Settings

ENV_FIELDS = (
    "state_dir",
    "pg_port",
    "pg_password",
    "mqtt_port",
    "mqtt_ingest_password",
    "mqtt_sim_password",
    "api_port",
    "sim_sensors",
    "sim_interval_seconds",
    "environment",
    "rules_file",
    "ingest_metrics_port",
    "rtsp_metrics_port",
    "alerts_metrics_port",
    "rollups_metrics_port",
    "rtsp_port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child `ioc` process use these settings."""
    env = dict(os.environ)
    for name in ENV_FIELDS:
        env[f"IOC_{name.upper()}"] = str(getattr(settings, name))
    return env | extra


@contextmanager
def isolated_stack(settings: Settings, *, sensors: int) -> Iterator[Settings]:
    """Own PostgreSQL+TimescaleDB and Mosquitto on free ports, migrated and seeded; removed after.

    A benchmark never touches the centre you may have running, and starts from empty tables.
    """
    from ioc.db import migrate
    from ioc.db.connect import connect
    from ioc.db.seed import load_geography, seed
    from ioc.services import LocalServices

    state = Path(tempfile.mkdtemp(prefix="ioc-bench-"))
    os.chmod(state, 0o755)
    bench = settings.model_copy(
        update={
            "state_dir": state,
            "pg_port": free_port(),
            "mqtt_port": free_port(),
            "api_port": free_port(),
            **dict.fromkeys(METRICS_PORT_FIELDS, 0),  # never the running centre's ports
            "sim_sensors": sensors,
            "database_url": None,
        }
    )
    svc = LocalServices(bench)
    svc.up()
    try:
        migrate.upgrade(bench.sqlalchemy_url)

        async def go() -> None:
            conn = await connect(bench.dsn)
            async with conn.transaction():
                await seed(
                    conn,
                    load_geography(bench.areas_file),
                    sensors=sensors,
                    seed_value=bench.sim_seed,
                )
            await conn.close()

        asyncio.run(go())
        yield bench
    finally:
        svc.purge()
        shutil.rmtree(state, ignore_errors=True)


def spawn(settings: Settings, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", *args],
        env=env_for(settings, **env),
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} did not say {text!r}; see {log}")  # type: ignore[arg-type]
        time.sleep(0.05)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``url`` answers, and for a health URL until it reports its database up.

    Raises with the reason when the process exits first or the time runs out."""
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = r.read()
            if not url.endswith("/health") or json.loads(body).get("database"):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


# ------------------------------------------------------------------------------ sign-in ---


def user_password(username: str) -> str:
    """The password benches and tests give the users they make (never used outside them)."""
    return f"{username}-bench-password"


async def ensure_user(
    dsn: str, username: str, *, role: str = "admin", area: str | None = None
) -> str:
    """Make ``username`` (if missing) with ``role`` over ``area`` (default: the root area);
    returns its password."""
    from ioc.db.connect import connect
    from ioc.security import users

    conn = await connect(dsn, autocommit=True)
    try:
        if await users.get_user(conn, username) is None:
            if area is None:
                cur = await conn.execute("SELECT id FROM areas WHERE parent_id IS NULL LIMIT 1")
                row = await cur.fetchone()
                assert row is not None, "no areas: seed the database first"
                area = row["id"]
            await users.add_user(
                conn,
                username=username,
                role=role,
                area_id=area,
                password=user_password(username),
                actor="bench",
            )
    finally:
        await conn.close()
    return user_password(username)


def login(base_url: str, username: str, password: str) -> str:
    """Sign in over HTTP; the access token for ``Authorization: Bearer``."""
    import json
    import urllib.request

    req = urllib.request.Request(
        base_url.rstrip("/") + "/api/v1/auth/login",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (our own API)
        return str(json.loads(r.read())["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def bench_token(
    settings: Settings, base_url: str, username: str = "bench", role: str = "admin"
) -> str:
    """A user for a benchmark or test, signed in: its access token."""
    password = await ensure_user(settings.dsn, username, role=role)
    return await asyncio.to_thread(login, base_url, username, password)


# --------------------------------------------------------------------------- publishing ---


def mqtt_client(
    settings: Settings,
    name: str,
    *,
    ingest: bool = False,
    inflight: int = 20,
    reconnect_max_s: float | None = None,
) -> Any:
    """A connected MQTT v5 client (its network loop started) with the sim login, or the
    ingest login; ``reconnect_max_s`` caps paho's reconnect delay."""
    import uuid

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:6]}",
        protocol=mqtt.MQTTv5,
    )
    if ingest:
        c.username_pw_set(settings.mqtt_ingest_user, settings.mqtt_ingest_password)
    else:
        c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.max_inflight_messages_set(inflight)
    if reconnect_max_s is not None:
        c.reconnect_delay_set(1, int(reconnect_max_s))
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    return c


def probe_reading(device: str, seq: int, speed: float) -> bytes:
    """A one-second traffic reading observed now, at ``speed`` km/h."""
    from datetime import UTC, datetime

    from ioc.domain import wire

    return wire.TrafficObservation(
        device_id=device,
        seq=seq,
        observed_at=datetime.now(UTC),
        intensity=5,
        average_speed=speed,
        occupancy=0.2,
        interval_s=1,
    ).to_payload()
