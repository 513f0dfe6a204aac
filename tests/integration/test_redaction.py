"""Credentials never reach the output: the real roles run as subprocesses against failing
cameras, a wrong database password and a wrong broker password, at DEBUG level (library logs
included), and every byte they write to stdout and stderr is searched.

Redaction lives in the logging layer (ioc/logs.py); these tests do not care where a leak would
come from, only that none shows, and that the error still says what went wrong.
"""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.types.json import Jsonb

from ioc.config import Settings
from ioc.db.cameras import seed_cameras
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from tests.conftest import drop_database, env_for, free_port, own_database

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:8]
RTSP_PASSWORD = f"S3cretPass-{TAG}"  # IOC_RTSP_PASSWORD: every camera's login
EMBEDDED_PASSWORD = f"Embedded:P@ss/{TAG}"  # typed into one camera's URL by an installer
DB_PASSWORD = f"WrongDbPass-{TAG}"
MQTT_PASSWORD = f"WrongMqttPass-{TAG}"


def leaks(output: str, *secrets: str) -> list[str]:
    """The secrets (or their URL-quoted / Basic-auth forms) that appear in ``output``."""
    found = []
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), quote(secret, safe="@:/")}
        forms.add(base64.b64encode(f"cam-user:{secret}".encode()).decode())
        found += [form for form in forms if form in output]
    return found


def run_role(
    argv: list[str],
    env: dict[str, str],
    log: Path,
    *,
    until: Callable[[str], bool] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """``ioc <argv>`` with stdout and stderr into one file; stopped (SIGTERM) once ``until``
    holds for what it wrote. Returns the exit code and everything it wrote."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", *argv], env=env, stdout=out, stderr=out
        )
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if until is not None and until(log.read_text(errors="replace")):
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                proc.terminate()
            code = proc.wait(20)
    return code, log.read_text(errors="replace")


class RefusingCamera:
    """An RTSP server that answers every request with 401 (Basic). ``received`` holds the
    Authorization headers it got: proof that the password was really sent, and in which form."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = int(self.server.getsockname()[1])
        self.received: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    text = head.decode("latin-1")
                    self.received += re.findall(r"(?im)^authorization:\s*(.+?)\s*$", text)
                    cseq = re.search(r"(?im)^cseq:\s*(\d+)", text)
                    conn.sendall(
                        b"RTSP/1.0 401 Unauthorized\r\n"
                        + f"CSeq: {cseq.group(1) if cseq else 1}\r\n".encode()
                        + b'WWW-Authenticate: Basic realm="ioc-test"\r\n'
                        + b"Content-Length: 0\r\n\r\n"
                    )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.server.close()


@contextmanager
def refusing_camera() -> Iterator[RefusingCamera]:
    camera = RefusingCamera()
    try:
        yield camera
    finally:
        camera.close()


async def test_camera_worker_never_prints_camera_credentials(
    services: Settings, tmp_path: Path
) -> None:
    settings, name = await own_database(services, "redact")
    closed = free_port()  # nothing listens here
    try:
        with refusing_camera() as camera:
            conn = await connect(settings.dsn)
            async with conn.transaction():
                geo = load_geography(settings.areas_file)
                await seed(conn, geo, sensors=1, seed_value=58)
                await seed_cameras(conn, geo, 1, 58, f"rtsp://127.0.0.1:{closed}")  # cam-0001
                await conn.execute(
                    """INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata)
                       SELECT 'cam-0002', 'camera', 'installer URL', area_id, lat, lon, %s
                       FROM devices WHERE id = 'cam-0001'""",
                    (
                        Jsonb(
                            {
                                "rtsp_url": "rtsp://installer:"
                                f"{quote(EMBEDDED_PASSWORD, safe='')}@127.0.0.1:{camera.port}/live",
                                "pool": "default",
                            }
                        ),
                    ),
                )
            await conn.close()
            env = env_for(
                settings,
                IOC_DATABASE_URL=str(settings.database_url),
                IOC_RTSP_USER="cam-user",
                IOC_RTSP_PASSWORD=RTSP_PASSWORD,
                IOC_LOG_LEVEL="DEBUG",
                IOC_CAMERA_WORKER_ID=f"redact-{TAG}",
                IOC_CAMERA_HEALTH_SECONDS="1",
            )

            def both_failed(text: str) -> bool:
                failed = [x for x in text.splitlines() if "camera not opened" in x]
                return any("cam-0001" in x for x in failed) and any("cam-0002" in x for x in failed)

            code, output = run_role(
                ["ingest", "rtsp"], env, tmp_path / "rtsp.log", until=both_failed, timeout=90
            )
    finally:
        await drop_database(services, name)
    assert both_failed(output), output[-3000:]
    assert code == 0, output[-3000:]  # stopped by SIGTERM, in order
    # The password was in play: the camera received it (Basic auth), yet it was never printed.
    sent = base64.b64encode(f"cam-user:{RTSP_PASSWORD}".encode()).decode()
    assert f"Basic {sent}" in camera.received
    assert not leaks(output, RTSP_PASSWORD, EMBEDDED_PASSWORD, services.pg_password), output
    # ...and the operator still learns what is wrong, and where.
    assert re.search(r"cam-0001.*unreachable|unreachable.*cam-0001", output)
    assert re.search(r"cam-0002.*auth_failed|auth_failed.*cam-0002", output)
    assert f"127.0.0.1:{closed}" in output


def _wrong_db(settings: Settings) -> dict[str, str]:
    url = f"postgresql://ioc:{quote(DB_PASSWORD, safe='')}@127.0.0.1:{settings.pg_port}/ioc"
    return {"IOC_DATABASE_URL": url, "IOC_PG_PASSWORD": DB_PASSWORD}


def _bad_dsn_option(settings: Settings) -> dict[str, str]:
    url = f"postgresql://ioc:{DB_PASSWORD}@127.0.0.1:{settings.pg_port}/ioc?sslmode=sometimes"
    return {"IOC_DATABASE_URL": url}


@pytest.mark.parametrize(
    ("argv", "make_env", "expected"),
    [
        (["migrate"], _wrong_db, "password authentication failed"),
        (["alerts"], _wrong_db, "password authentication failed"),
        (["ingest", "rtsp"], _wrong_db, "password authentication failed"),
        (["mqtt", "sync-logins"], _wrong_db, "password authentication failed"),
        (["migrate"], _bad_dsn_option, "sslmode"),
        (["alerts"], _bad_dsn_option, "sslmode"),
        (
            ["ingest", "mqtt"],
            lambda s: {"IOC_MQTT_INGEST_PASSWORD": MQTT_PASSWORD, "IOC_INGEST_METRICS_PORT": "0"},
            "not authori",  # "Not authorized": the broker refused the login
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else getattr(v, "__name__", None),
)
def test_a_refused_login_is_reported_without_the_password(
    services: Settings,
    tmp_path: Path,
    argv: list[str],
    make_env: Callable[[Settings], dict[str, str]],
    expected: str,
) -> None:
    env = env_for(services, IOC_LOG_LEVEL="DEBUG", **make_env(services))
    retries = argv == ["ingest", "mqtt"]  # the MQTT worker keeps trying until it is stopped

    def said_it(text: str) -> bool:
        return expected in text.lower()

    code, output = run_role(
        argv, env, tmp_path / "role.log", until=said_it if retries else None, timeout=60
    )
    assert said_it(output), output[-3000:]
    assert not leaks(output, DB_PASSWORD, MQTT_PASSWORD), output
    if not retries:
        assert code == 2, output[-3000:]  # a known error: one line, cause and fix
