"""Shared fixtures. Integration and e2e tests run against the real services, started here on
free ports with their own state directory, and stopped at the end of the session."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioc.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that makes a child `ioc` process use these settings."""
    env = dict(os.environ)
    for name in (
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
    ):
        env[f"IOC_{name.upper()}"] = str(getattr(settings, name))
    return env


@pytest.fixture(scope="session")
def services() -> Iterator[Settings]:
    """PostgreSQL+TimescaleDB and Mosquitto for the whole test session, migrated and seeded."""
    import asyncio

    from ioc.db import migrate
    from ioc.db.connect import connect
    from ioc.db.seed import load_geography, seed
    from ioc.services import LocalServices

    state = Path(tempfile.mkdtemp(prefix="ioc-test-"))
    os.chmod(state, 0o755)
    settings = Settings(
        environment="test",
        state_dir=state,
        pg_port=free_port(),
        mqtt_port=free_port(),
        api_port=free_port(),
        pg_password="test-pg-secret",
        mqtt_ingest_password="test-ingest-secret",
        mqtt_sim_password="test-sim-secret",
        sim_sensors=60,
        sim_interval_seconds=1.0,
    )
    svc = LocalServices(settings)
    svc.up()
    try:
        migrate.upgrade(settings.sqlalchemy_url)

        async def go() -> None:
            conn = await connect(settings.dsn)
            async with conn.transaction():
                await seed(conn, load_geography(settings.areas_file), sensors=60, seed_value=58)
            await conn.close()

        asyncio.run(go())
        yield settings
    finally:
        svc.down()
