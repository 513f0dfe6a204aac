"""The logging layer removes credentials from everything a role writes (ioc/logs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import pytest

from ioc import logs

SECRET = f"Sekr1t-{uuid.uuid4().hex[:8]}"
logs.register_secrets([SECRET])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:hunter22@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("postgresql://ioc:p%40ss@db:5432/ioc", "postgresql://***@db:5432/ioc"),
        ("mqtts://dev:a@b@broker:8883", "mqtts://***@broker:8883"),  # a raw "@" in a password
        ("open 'rtsp://u:p@h/x' failed", "open 'rtsp://***@h/x' failed"),
        ("host=db password=hunter22 dbname=ioc", "host=db password=*** dbname=ioc"),
        ("password='two words' user=x", "password='***' user=x"),
        ('{"mqtt_sim_password": "hunter22", "n": 1}', '{"mqtt_sim_password": "***", "n": 1}'),
        ("IOC_SECRET_KEY=abcdefgh", "IOC_SECRET_KEY=***"),
        ("api_token: abc.def.ghi", "api_token: ***"),
    ],
)
def test_credentials_are_removed(text: str, expected: str) -> None:
    assert logs.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'FATAL:  password authentication failed for user "ioc"',
        "device ops@example.com on ioc/v1/traffic/+/observation",
        "rtsp://10.0.0.5:554/cam1 opened",
        "password=None token=null",
        "tokens=5 password_set=true",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert logs.redact(text) == text


def test_known_secrets_go_wherever_they_appear() -> None:
    assert logs.redact(f"login {SECRET} refused") == "login *** refused"
    assert logs.redact(json.dumps({"x": f'a"{SECRET}'})) == json.dumps({"x": 'a"***'})
    logs.register_secrets(["short"])  # too short to search for: it would mask ordinary words
    assert logs.redact("a short note") == "a short note"


def test_secret_values_of_settings() -> None:
    from ioc.config import Settings

    s = Settings(
        _env_file=None,
        pg_password="pg-secret-1",
        mqtt_device_secret="device-secret-1",
        secret_key="k" * 32,
        database_url="postgresql://ioc:url-secret-1@db/ioc",
    )
    values = set(logs.secret_values(s))
    assert {"pg-secret-1", "device-secret-1", "k" * 32, "url-secret-1"} <= values
    assert "ioc-ingest" not in values and "127.0.0.1" not in values


SCRIPT = """
import logging, sys, threading
import structlog
from ioc import logs

logs.configure("DEBUG", sys.argv[1], role="t", secrets=[sys.argv[2]])
secret = sys.argv[2]
url = f"rtsp://cam:{secret}@10.1.1.1:554/live"
log = structlog.get_logger("t")
log.info("watching", url=url, note=f"pw is {secret}")
try:
    raise ConnectionError(f"cannot open {url}")
except ConnectionError:
    log.exception("capture failed")
lib = logging.getLogger("somelib")
lib.warning("connect to %s failed", url)
lib.info("dsn %(dsn)s", {"dsn": f"host=db password={secret}"})
try:
    raise OSError(f"postgresql://ioc:{secret}@db/ioc refused")
except OSError:
    lib.exception("pool error")
# A library with its own handler and formatter, not propagating (as uvicorn's loggers do).
own = logging.getLogger("uvicorn.error")
own.propagate = False
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("UVICORN %(levelname)s %(message)s"))
own.addHandler(handler)
own.error("bind failed for %s", url)
def boom():
    raise RuntimeError(f"thread died holding {url}")
t = threading.Thread(target=boom); t.start(); t.join()
print("DONE", file=sys.stderr, flush=True)
raise SystemError(f"uncaught: {secret}")
"""


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_every_output_path_of_a_process_is_redacted(fmt: str) -> None:
    secret = f"Proc-{uuid.uuid4().hex[:10]}"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), fmt, secret],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert "DONE" in output, output
    assert secret not in output, output
    for seen in (
        "watching",
        "capture failed",
        "ConnectionError: cannot open rtsp://***@10.1.1.1:554/live",
        "connect to rtsp://***@10.1.1.1:554/live failed",
        "password=***",
        "postgresql://***@db/ioc refused",
        "UVICORN ERROR bind failed for rtsp://***@10.1.1.1:554/live",
        "thread died holding rtsp://***@10.1.1.1:554/live",
        "SystemError: uncaught: ***",
    ):
        assert seen in output, (seen, output)
    assert done.returncode == 1
