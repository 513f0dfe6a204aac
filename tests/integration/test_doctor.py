"""`ioc doctor` against the real services: all ok when the centre runs; a wrong port, a wrong
password, a schema behind the code and certificates near their end each fail or warn with
the fix named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ioc.bench.common import wait_http
from ioc.config import Settings
from ioc.ops.doctor import DoctorOptions, check_certs, check_database
from tests.conftest import env_for, free_port
from tests.integration.test_migrations import REVISIONS, alembic_config, empty_database

pytestmark = pytest.mark.integration

CORE = ("database", "postgresql", "timescaledb", "licence", "migrations", "clock", "mqtt", "api")


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture(scope="module")
def api(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("doctor") / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "api"],
            env=env_for(services),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{services.api_port}"
    try:
        wait_http(url + "/api/v1/health", proc, 60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_all_ok_on_a_running_centre(services: Settings, api: str) -> None:
    proc = doctor(env_for(services), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = by_name(report)
    assert report["ok"] is True and report["failed"] == 0
    for name in CORE:
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["disk"]["status"] in ("ok", "warn")
    assert checks["rtsp"]["status"] in ("ok", "warn", "skip")
    assert checks["timescaledb"]["detail"].startswith("TimescaleDB 2.")
    assert checks["licence"]["detail"].startswith(("apache", "timescale"))
    assert services.pg_password not in proc.stdout + proc.stderr

    text = doctor(env_for(services))
    assert text.returncode == 0, text.stdout
    lines = text.stdout.strip().splitlines()
    assert all(line.split()[0] in ("ok", "warn", "skip") for line in lines[:-1]), lines
    assert lines[-1].startswith("all checks passed")


def test_wrong_ports_fail_with_the_fix(services: Settings) -> None:
    env = env_for(services) | {
        "IOC_PG_PORT": str(free_port()),
        "IOC_MQTT_PORT": str(free_port()),
        "IOC_API_PORT": str(free_port()),
    }
    proc = doctor(env, "--json")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    checks = by_name(report)
    assert report["ok"] is False and report["failed"] == 3
    db = checks["database"]
    assert db["status"] == "fail" and env["IOC_PG_PORT"] in db["detail"]
    assert "ioc services up" in db["fix"] and "IOC_PG_PORT" in db["fix"]
    for name in ("postgresql", "timescaledb", "licence", "migrations", "clock"):
        assert checks[name]["status"] == "skip", checks[name]
    assert checks["mqtt"]["status"] == "fail" and "IOC_MQTT_PORT" in checks["mqtt"]["fix"]
    assert checks["api"]["status"] == "fail" and "ioc api" in checks["api"]["fix"]

    text = doctor(env)
    assert text.returncode == 1
    db_line = next(line for line in text.stdout.splitlines() if line.split()[1] == "database")
    assert db_line.startswith("fail") and "→ fix: start it with `ioc services up`" in db_line
    assert "3 check(s) failed" in text.stdout.splitlines()[-1]


def test_wrong_ingest_password_is_refused_by_the_broker(services: Settings) -> None:
    env = env_for(services) | {"IOC_MQTT_INGEST_PASSWORD": "not-the-password"}
    proc = doctor(env, "--json", "--timeout", "3")
    assert proc.returncode == 1
    mqtt = by_name(json.loads(proc.stdout))["mqtt"]
    assert mqtt["status"] == "fail" and "refused the ingest login" in mqtt["detail"]
    assert "IOC_MQTT_INGEST_PASSWORD" in mqtt["fix"]
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_schema_behind_the_code_names_ioc_migrate(services: Settings) -> None:
    from alembic import command

    with empty_database(services, "ioc_doctor_old") as (dsn, url):
        settings = services.model_copy(update={"database_url": dsn})
        checks, _ = check_database(settings, DoctorOptions())
        assert {c.name: c.status for c in checks}["migrations"] == "fail"
        migrations = next(c for c in checks if c.name == "migrations")
        assert "no schema" in migrations.detail and "ioc migrate" in migrations.fix

        command.upgrade(alembic_config(url), REVISIONS[-2])
        checks, _ = check_database(settings, DoctorOptions())
        migrations = next(c for c in checks if c.name == "migrations")
        assert migrations.status == "fail"
        assert f"at {REVISIONS[-2]}, code needs {REVISIONS[-1]}" in migrations.detail
        assert "ioc migrate" in migrations.fix


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_certificates_near_their_end_warn(tmp_path: Path) -> None:
    def cert(name: str, days: int) -> Path:
        path = tmp_path / f"{name}.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-days", str(days), "-keyout", str(tmp_path / f"{name}.key"), "-out", str(path)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return path

    soon, later = cert("soon", 5), cert("later", 400)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    checks = check_certs([soon, later, junk, tmp_path / "missing.pem"], datetime.now(UTC))
    assert [c.status for c in checks] == ["warn", "ok", "fail", "fail"]
    assert "in 5 days" in checks[0].detail or "in 4 days" in checks[0].detail
    assert "renew" in checks[0].fix
    assert "not a PEM certificate" in checks[2].detail and "not found" in checks[3].detail
