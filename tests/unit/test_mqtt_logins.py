"""Device credentials, the Mosquitto password file and the generated ACL (ioc/mqtt_logins.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import subprocess
from pathlib import Path

import pytest

from ioc import mqtt_logins
from ioc.config import Settings

MOSQUITTO_PASSWD = Path("/usr/bin/mosquitto_passwd")


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"_env_file": None, "mqtt_device_secret": "fleet-secret"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def test_device_password_is_the_documented_derivation() -> None:
    pw = mqtt_logins.device_password("fleet-secret", "ts-00042")
    digest = hmac.new(b"fleet-secret", b"ts-00042", hashlib.sha256).digest()
    assert pw == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(pw) == 43 and pw == mqtt_logins.device_password("fleet-secret", "ts-00042")
    assert pw != mqtt_logins.device_password("fleet-secret", "ts-00043")
    assert pw != mqtt_logins.device_password("other-secret", "ts-00042")


def test_hash_is_mosquitto_2_format_and_verifies() -> None:
    encoded = mqtt_logins.hash_password("p4ss", salt=b"\0" * 12)
    kind, iterations, salt, digest = encoded.split("$")[1:]
    assert (kind, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(digest)) == 64
    assert mqtt_logins.verify_password("p4ss", encoded)
    assert not mqtt_logins.verify_password("p4sS", encoded)
    assert not mqtt_logins.verify_password("p4ss", "$6$abc$def")  # an older format: re-hash
    assert not mqtt_logins.verify_password("p4ss", "garbage")


@pytest.mark.skipif(not MOSQUITTO_PASSWD.is_file(), reason="mosquitto_passwd not installed")
def test_reads_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    subprocess.run([str(MOSQUITTO_PASSWD), "-c", "-b", str(path), "dev-1", "s3cret"], check=True)
    entries = mqtt_logins.parse_password_file(path.read_text())
    assert list(entries) == ["dev-1"]
    assert mqtt_logins.verify_password("s3cret", entries["dev-1"])


def test_merge_keeps_good_lines_and_others_only_when_asked() -> None:
    existing = {
        "ts-1": mqtt_logins.hash_password("right"),
        "ts-2": mqtt_logins.hash_password("stale"),
        "gone": mqtt_logins.hash_password("x"),
    }
    wanted = {"ts-1": "right", "ts-2": "new", "ts-3": "fresh"}
    merged, result = mqtt_logins.merge_entries(existing, wanted, keep_others=True)
    assert merged["ts-1"] == existing["ts-1"]  # unchanged line: no churn, no reload
    assert mqtt_logins.verify_password("new", merged["ts-2"])
    assert mqtt_logins.verify_password("fresh", merged["ts-3"])
    assert "gone" in merged
    assert (result.added, result.updated, result.kept, result.others) == (1, 1, 1, 1)
    exact, result = mqtt_logins.merge_entries(existing, wanted, keep_others=False)
    assert set(exact) == set(wanted) and result.removed == 1


def test_write_login_files_is_atomic_private_and_idempotent(tmp_path: Path) -> None:
    s = settings()
    wanted = mqtt_logins.service_logins(s, sim_login=True) | mqtt_logins.device_logins(
        s, ["ts-00001", "ts-00002"]
    )
    acl = mqtt_logins.acl_text(s, sim_login=True)
    first = mqtt_logins.write_login_files(tmp_path, wanted, acl, keep_others=True)
    assert first.added == 4 and first.acl_changed
    passwd = tmp_path / "passwd"
    assert passwd.stat().st_mode & 0o777 == 0o600
    before = passwd.read_text()
    again = mqtt_logins.write_login_files(tmp_path, wanted, acl, keep_others=True)
    assert not again.changed and passwd.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".logins.lock", "acl", "passwd"]


def test_device_ids_that_cannot_be_logins_are_refused() -> None:
    s = settings()
    with pytest.raises(mqtt_logins.LoginError, match="not a valid device id"):
        mqtt_logins.device_logins(s, ["bad/id"])
    with pytest.raises(mqtt_logins.LoginError, match="service login"):
        mqtt_logins.device_logins(s, [s.mqtt_ingest_user])


def test_acl_rights() -> None:
    s = settings()
    prod = mqtt_logins.acl_text(s, sim_login=False)
    rules = [line for line in prod.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "pattern write ioc/v1/traffic/%u/observation",
        "pattern write ioc/v1/traffic/%u/availability",
        "user ioc-ingest",
        "topic deny ioc/v1/traffic/ioc-ingest/#",
        "topic read ioc/v1/traffic/+/observation",
        "topic read ioc/v1/traffic/+/availability",
    ]
    dev = mqtt_logins.acl_text(s, sim_login=True)
    assert dev.startswith(prod) and "user ioc-sim\ntopic readwrite ioc/#\n" in dev


def test_sim_login_only_outside_production_unless_asked() -> None:
    assert mqtt_logins.default_sim_login(settings(environment="test"))
    prod = {
        "environment": "production",
        "pg_password": "p" * 12,
        "secret_key": "k" * 40,
        "mqtt_ingest_password": "i" * 12,
        "mqtt_sim_password": "s" * 12,
        "mqtt_device_secret": "d" * 12,
    }
    assert not mqtt_logins.default_sim_login(settings(**prod))
    assert mqtt_logins.default_sim_login(settings(**prod, mqtt_sim_login=True))
    assert "ioc-sim" not in mqtt_logins.service_logins(settings(**prod), sim_login=False)


def test_production_refuses_the_default_device_secret() -> None:
    with pytest.raises(ValueError, match="IOC_MQTT_DEVICE_SECRET"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            pg_password="p" * 12,
            secret_key="k" * 40,
            mqtt_ingest_password="i" * 12,
            mqtt_sim_password="s" * 12,
        )


def test_installers_csv() -> None:
    s = settings()
    out = io.StringIO()
    n = mqtt_logins.write_credentials_csv(s, [("ts-00001", "dong-xoai")], out)
    lines = out.getvalue().splitlines()
    assert n == 1
    assert lines[0] == ("device_id,area_id,username,password,observation_topic,availability_topic")
    pw = mqtt_logins.device_password("fleet-secret", "ts-00001")
    assert lines[1] == (
        f"ts-00001,dong-xoai,ts-00001,{pw},"
        "ioc/v1/traffic/ts-00001/observation,ioc/v1/traffic/ts-00001/availability"
    )
