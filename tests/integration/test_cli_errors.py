"""Bad configuration and missing services: one line naming the cause and the fix, exit non-zero,
never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import psycopg
import pytest

from ioc.config import Settings
from tests.conftest import env_for, free_port

pytestmark = pytest.mark.integration


def ioc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ioc: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_bad_setting(services: Settings) -> None:
    env = env_for(services) | {"IOC_PG_PORT": "five"}
    one_line_error(ioc(env, "migrate"), "pg_port")


def test_missing_areas_file(services: Settings) -> None:
    env = env_for(services) | {"IOC_AREAS_FILE": "/nonexistent/areas.yaml"}
    one_line_error(ioc(env, "seed"), "/nonexistent/areas.yaml", "IOC_AREAS_FILE")


def test_broken_rules_file(services: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "rules:\n  - id: x\n    metric: colour\n    op: below\n    threshold: 1\n"
        "    clear: 2\n    title: t\n"
    )
    env = env_for(services) | {"IOC_RULES_FILE": str(bad)}
    one_line_error(ioc(env, "alerts"), "rule 'x'", "metric")


def test_database_not_running(services: Settings) -> None:
    env = env_for(services) | {"IOC_PG_PORT": str(free_port())}
    one_line_error(ioc(env, "alerts"), "cannot reach PostgreSQL", "ioc services up")


def test_broker_not_running(services: Settings) -> None:
    env = env_for(services) | {"IOC_MQTT_PORT": str(free_port())}
    one_line_error(ioc(env, "ingest", "mqtt"), "MQTT broker", "ioc services up")


def test_wrong_broker_password(services: Settings) -> None:
    env = env_for(services) | {"IOC_MQTT_INGEST_PASSWORD": "wrong"}
    one_line_error(ioc(env, "ingest", "mqtt"), "MQTT broker")


def test_missing_migration(services: Settings) -> None:
    with psycopg.connect(services.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS ioc_unmigrated")
        conn.execute("CREATE DATABASE ioc_unmigrated")
    env = env_for(services) | {"IOC_PG_DATABASE": "ioc_unmigrated"}
    one_line_error(ioc(env, "api"), "ioc migrate")


def test_port_in_use(services: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = env_for(services) | {
            "IOC_STATE_DIR": str(tmp_path / "state"),
            "IOC_PG_PORT": str(port),
        }
        one_line_error(ioc(env, "services", "up"), str(port), "IOC_PG_PORT")
