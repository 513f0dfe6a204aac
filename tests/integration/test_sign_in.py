"""Sign-in, sessions, lockout, cookies and Origin, the live stream's checks, the audit log and
`ioc users`, against the real database (own copy) and a real API server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ioc.api.app import create_app
from ioc.bench.common import ensure_user, user_password
from ioc.config import DEV_SECRET, SECRET_FIELDS, Settings
from ioc.db import alerts as alerts_db
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.security import tokens
from tests.conftest import api_client, api_server, drop_database, env_for, own_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def world(services: Settings) -> AsyncIterator[Settings]:
    settings, name = await own_database(services, "ioc_sign_in")
    settings = settings.model_copy(
        update={"login_max_failures": 3, "login_lockout_seconds": 2, "login_ip_max_failures": 12}
    )
    conn = await connect(settings.dsn, autocommit=True)
    await seed(conn, load_geography(settings.areas_file), sensors=0, seed_value=1)
    for dev, area in (("si-in", "dong-xoai"), ("si-out", "binh-long")):
        await conn.execute(
            "INSERT INTO devices (id, kind, name, area_id, lat, lon) "
            "SELECT %s, 'traffic_sensor', %s, id, lat, lon FROM areas WHERE id = %s",
            (dev, dev, area),
        )
    await conn.close()
    try:
        yield settings
    finally:
        await drop_database(services, name)


@pytest.fixture
async def http(world: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(world) as c:
        yield c


@pytest.fixture
async def server(world: Settings) -> AsyncIterator[str]:
    async with api_server(world) as where:
        yield where


async def login(http: httpx.AsyncClient, user: str, password: str | None = None) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/login",
        json={"username": user, "password": password or user_password(user)},
        headers={"Origin": "http://ioc"},
    )


async def audit_actions(settings: Settings, actor: str) -> list[str]:
    conn = await connect(settings.dsn, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT action FROM audit_log WHERE actor = %s ORDER BY id", (actor,)
        )
        return [r["action"] for r in await cur.fetchall()]
    finally:
        await conn.close()


async def test_cookie_session_refresh_rotation_and_logout(
    world: Settings, http: httpx.AsyncClient
) -> None:
    await ensure_user(world.dsn, "op-cookie", role="operator", area="dong-xoai")
    r = await login(http, "op-cookie")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == {
        "username": "op-cookie", "display_name": "", "role": "operator",
        "area_id": "dong-xoai", "area_name": "Đồng Xoài",
    }  # fmt: skip
    cookies = {c.name: c for c in http.cookies.jar}
    assert set(cookies) == {"ioc_access", "ioc_refresh"}
    assert all(c.has_nonstandard_attr("HttpOnly") for c in cookies.values())
    assert "samesite=strict" in r.headers.get_list("set-cookie")[0].lower()
    assert cookies["ioc_refresh"].path == "/api/v1/auth"
    assert (await http.get("/api/v1/auth/me")).json()["user"]["username"] == "op-cookie"

    # A write with the cookie must come from our own origin: cross-site requests are refused.
    alerts = "/api/v1/maintenance"
    assert (await http.post(alerts, json={})).status_code == 403  # no Origin
    evil = await http.post(alerts, json={}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["detail"]["code"] == "bad_origin"

    # Refresh rotates: the old refresh token stops working.
    old = body["refresh_token"]
    r2 = await http.post("/api/v1/auth/refresh", headers={"Origin": "http://ioc"})
    assert r2.status_code == 200 and r2.json()["refresh_token"] != old
    stale = await http.post("/api/v1/auth/refresh", json={"refresh_token": old})
    assert stale.status_code == 401
    access = r2.json()["access_token"]

    out = await http.post("/api/v1/auth/logout", headers={"Origin": "http://ioc"})
    assert out.status_code == 204
    http.cookies.clear()
    after = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert after.status_code == 401  # the still-unexpired access token died with its session
    again = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": r2.json()["refresh_token"]}
    )
    assert again.status_code == 401
    assert await audit_actions(world, "op-cookie") == ["auth.sign_in", "auth.sign_out"]


async def test_wrong_password_locks_the_account_then_lets_it_in(
    world: Settings, http: httpx.AsyncClient
) -> None:
    await ensure_user(world.dsn, "op-lock", role="operator", area="dong-xoai")
    for _ in range(world.login_max_failures):
        r = await login(http, "op-lock", "wrong-password-123")
        assert r.status_code == 401 and r.json()["detail"]["code"] == "bad_credentials"
    locked = await login(http, "op-lock")  # even the right password: locked for a while
    assert locked.status_code == 429 and locked.json()["detail"]["code"] == "locked"
    assert int(locked.headers["Retry-After"]) >= 1
    await asyncio.sleep(world.login_lockout_seconds + 0.5)
    assert (await login(http, "op-lock")).status_code == 200
    unknown = await login(http, "nobody-here", "whatever-password")
    assert unknown.status_code == 401 and unknown.json()["detail"]["code"] == "bad_credentials"
    actions = await audit_actions(world, "op-lock")
    assert actions.count("auth.sign_in_failed") == world.login_max_failures + 1
    assert actions[-1] == "auth.sign_in"


async def test_one_address_guessing_many_names_is_rate_limited(world: Settings) -> None:
    app = create_app(world)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ioc") as c,
    ):
        codes = [
            (
                await c.post(
                    "/api/v1/auth/login",
                    json={"username": f"guess{i}", "password": "pw-guess-12345"},
                )
            ).status_code
            for i in range(world.login_ip_max_failures + 2)
        ]
    assert codes[: world.login_ip_max_failures] == [401] * world.login_ip_max_failures
    assert codes[-1] == 429


async def test_disabled_user_and_bad_tokens_are_refused(
    world: Settings, http: httpx.AsyncClient
) -> None:
    await ensure_user(world.dsn, "lead-x", role="leader", area="VN-58")
    token = (await login(http, "lead-x")).json()["access_token"]
    http.cookies.clear()
    auth = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/api/v1/alerts", headers=auth)).status_code == 200
    # Forged tokens: alg "none", another key, expired, a session id that does not exist.
    sid = tokens.read_access(world.secret_key, token).session_id
    forged = [
        jwt.encode(
            {"sub": "lead-x", "sid": sid, "iss": "ioc", "iat": 0, "exp": 2**31},
            None,
            algorithm="none",
        ),
        jwt.encode(
            {"sub": "lead-x", "sid": sid, "iss": "ioc", "iat": 0, "exp": 2**31},
            "k" * 32,
            algorithm="HS256",
        ),
        tokens.issue_access(world.secret_key, "lead-x", sid, timedelta(seconds=-5)),
        tokens.issue_access(
            world.secret_key, "lead-x", "8c5a4b39-0000-4000-8000-000000000000", timedelta(minutes=5)
        ),
        tokens.issue_access(
            world.secret_key, "admin-x", sid, timedelta(minutes=5)
        ),  # someone else's session
    ]
    for bad in forged:
        r = await http.get("/api/v1/alerts", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad
    proc = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "users", "disable", "lead-x"],
        env=env_for(world, IOC_DATABASE_URL=world.dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (await http.get("/api/v1/alerts", headers=auth)).status_code == 401
    r = await login(http, "lead-x")
    assert r.status_code == 403 and r.json()["detail"]["code"] == "disabled"


async def test_users_cli_add_list_reset(world: Settings, http: httpx.AsyncClient) -> None:
    env = env_for(world, IOC_DATABASE_URL=world.dsn)

    def ioc(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ioc.cli", "users", *args],
            env=env, input=stdin, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    made = ioc(
        "add",
        "sup-cli",
        "--role",
        "supervisor",
        "--area",
        "dong-xoai",
        "--password-stdin",
        stdin="first-password-1\n",
    )
    assert made.returncode == 0, made.stderr
    assert "first-password-1" not in made.stdout + made.stderr
    short = ioc(
        "add",
        "sup-short",
        "--role",
        "supervisor",
        "--area",
        "dong-xoai",
        "--password-stdin",
        stdin="short\n",
    )
    assert short.returncode != 0 and "10 characters" in short.stderr
    bad_area = ioc(
        "add",
        "sup-x",
        "--role",
        "supervisor",
        "--area",
        "atlantis",
        "--password-stdin",
        stdin="long-enough-pw\n",
    )
    assert bad_area.returncode != 0 and "unknown area" in bad_area.stderr
    listed = ioc("list")
    assert "sup-cli" in listed.stdout and "supervisor" in listed.stdout
    assert (await login(http, "sup-cli", "first-password-1")).status_code == 200
    http.cookies.clear()
    generated = ioc(
        "reset-password", "sup-cli"
    )  # no stdin, no tty: a generated password, shown once
    assert generated.returncode == 0, generated.stderr
    new = generated.stdout.strip().splitlines()[-1].split(": ", 1)[1]
    assert (await login(http, "sup-cli", "first-password-1")).status_code == 401
    assert (await login(http, "sup-cli", new)).status_code == 200
    actions = await audit_actions(world, "cli:" + __import__("getpass").getuser())
    assert {"user.add", "user.reset_password"} <= set(actions)


async def test_security_headers_and_pages_need_sign_in(http: httpx.AsyncClient) -> None:
    r = await http.get("/wall")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fwall"
    page = await http.get("/login")
    for h in (
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
    ):
        assert h in page.headers, h
    assert page.headers["x-frame-options"] == "DENY"


def test_production_refuses_default_secrets_and_open_origins() -> None:
    strong = {f: "x" * 40 for f in SECRET_FIELDS}
    with pytest.raises(ValueError, match="IOC_SECRET_KEY"):
        Settings(environment="production", **(strong | {"secret_key": DEV_SECRET}))
    with pytest.raises(ValueError, match="IOC_ALLOWED_ORIGINS"):
        Settings(environment="production", allowed_origins=["*"], **strong)


async def test_secret_from_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "key"
    f.write_text("k" * 48 + "\n")
    monkeypatch.setenv("IOC_SECRET_KEY_FILE", str(f))
    assert Settings().secret_key == "k" * 48


async def _recv_until_close(ws: Any, timeout: float) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


async def test_stream_needs_sign_in_checks_origin_and_area(
    world: Settings, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"ws://{server}/api/v1/stream"
    async with ws_connect(url) as ws:  # no credentials
        assert await _recv_until_close(ws, 5) == 4401
    password = await ensure_user(world.dsn, "op-ws", role="operator", area="dong-xoai")
    async with httpx.AsyncClient(base_url=f"http://{server}") as h:
        r = await h.post("/api/v1/auth/login", json={"username": "op-ws", "password": password})
    token = r.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    with pytest.raises(InvalidStatus):  # a foreign page may not open a socket with a cookie
        async with ws_connect(
            url, origin="https://evil.example", additional_headers={"Cookie": f"ioc_access={token}"}
        ):  # type: ignore[arg-type]
            pass
    async with ws_connect(url + "?area=binh-long", additional_headers=auth) as ws:
        assert await _recv_until_close(ws, 5) == 4403
    # The browser way: the cookie, from our own origin.
    async with ws_connect(
        url, origin=f"http://{server}", additional_headers={"Cookie": f"ioc_access={token}"}
    ) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "snapshot"
    # An operator of Đồng Xoài never receives an event from Bình Long.
    async with ws_connect(url, additional_headers=auth) as ws:
        snap = json.loads(await ws.recv())
        assert snap["type"] == "snapshot"
        assert {d["area_id"] for d in snap["devices"]} <= {"dong-xoai"}
        conn = await connect(world.dsn, autocommit=True)
        ids = {}
        for dev in ("si-out", "si-in"):
            async with conn.transaction():
                row = await alerts_db.open_alert(
                    conn, rule_id="test.scope", device_id=dev, severity="major",
                    title="t", title_en="t", value=1.0, status="firing",
                )  # fmt: skip
            assert row is not None
            ids[dev] = row["id"]
        await conn.close()
        got: list[dict[str, Any]] = []
        while not any(m.get("alert", {}).get("id") == ids["si-in"] for m in got):
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m["type"] == "event":
                got.append(m)
        assert all(m["area_id"] == "dong-xoai" for m in got), got


async def test_stream_closes_when_the_session_is_revoked(world: Settings) -> None:
    quick = world.model_copy(update={"ws_session_check_seconds": 0.5})
    async with api_server(quick) as where:
        password = await ensure_user(world.dsn, "op-revoke", role="operator", area="VN-58")
        async with httpx.AsyncClient(base_url=f"http://{where}") as h:
            login = {"username": "op-revoke", "password": password}
            token = (await h.post("/api/v1/auth/login", json=login)).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with ws_connect(f"ws://{where}/api/v1/stream", additional_headers=auth) as ws:
                assert json.loads(await ws.recv())["type"] == "snapshot"
                assert (await h.post("/api/v1/auth/logout", headers=auth)).status_code == 204
                assert await _recv_until_close(ws, 10) == 4401


async def test_a_changed_rules_file_is_audited(world: Settings) -> None:
    from ioc.security.users import note_rules

    conn = await connect(world.dsn, autocommit=True)
    try:
        assert await note_rules(conn, "rules.yaml", "rules: [a]", ["a"])
        assert not await note_rules(conn, "rules.yaml", "rules: [a]", ["a"])  # same file again
        assert await note_rules(conn, "rules.yaml", "rules: [a, b]", ["a", "b"])
        cur = await conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'rules.changed' ORDER BY id DESC LIMIT 1"
        )
        detail = (await cur.fetchone())["detail"]
        assert detail["rules"] == ["a", "b"] and detail["previous_sha256"]
    finally:
        await conn.close()


async def test_sign_out_with_only_the_refresh_cookie(
    world: Settings, http: httpx.AsyncClient
) -> None:
    await ensure_user(world.dsn, "op-late", role="operator", area="dong-xoai")
    refresh = (await login(http, "op-late")).json()["refresh_token"]
    http.cookies.delete("ioc_access")  # expired in the browser: only the refresh cookie is left
    r = await http.post("/api/v1/auth/logout", headers={"Origin": "http://ioc"})
    assert r.status_code == 204
    again = await http.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert again.status_code == 401
