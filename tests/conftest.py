"""Shared fixtures. Integration and e2e tests run against the real services, started here on
free ports with their own state directory, and stopped at the end of the session."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ioc.bench.common import env_for, free_port
from ioc.config import Settings

__all__ = [
    "api_client",
    "api_server",
    "drop_database",
    "env_for",
    "free_port",
    "own_database",
    "sign_in",
]


@contextlib.asynccontextmanager
async def api_server(settings: Settings) -> AsyncIterator[str]:
    """The real API (uvicorn) in this process on a free port; yields ``host:port``."""
    import asyncio

    import uvicorn

    from ioc.api.app import create_app

    port = free_port()
    app = create_app(settings.model_copy(update={"api_port": port}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[Any]:
    """An httpx client talking to the app in this process (lifespan run: pool, event hub)."""
    import httpx

    from ioc.api.app import create_app

    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ioc") as c,
    ):
        yield c


async def sign_in(
    client: Any, dsn: str, username: str = "tester", *, role: str = "admin", area: str | None = None
) -> dict[str, str]:
    """Make the user (if missing), sign in through the API with an httpx client, and set its
    bearer header (cookies cleared: tests of cookie sign-in do that themselves)."""
    from ioc.bench.common import ensure_user

    password = await ensure_user(dsn, username, role=role, area=area)
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    client.headers.update(headers)
    client.cookies.clear()
    return headers


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
        ingest_metrics_port=0,
        rtsp_port=free_port(),
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


async def own_database(services: Settings, prefix: str) -> tuple[Settings, str]:
    """A fresh, migrated database in the session's cluster, for tests that need empty tables."""
    import asyncio
    import uuid

    from ioc.db import migrate
    from ioc.db.connect import connect

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await connect(services.dsn, autocommit=True)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    settings = services.model_copy(
        update={"database_url": services.dsn.rsplit("/", 1)[0] + "/" + name}
    )
    await asyncio.to_thread(migrate.upgrade, settings.sqlalchemy_url)
    return settings, name


async def drop_database(services: Settings, name: str) -> None:
    from ioc.db.connect import connect

    admin = await connect(services.dsn, autocommit=True)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()
