"""Shared by the browser tests: Chromium, a centre (`ioc api` on a database of its own, filled with
a demo day), users made with `ioc users add` as an administrator would, and signing in through
the real sign-in page — every browser context signs in by typing into the form."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from ioc.bench.common import wait_http
from ioc.config import Settings
from tests.conftest import drop_database, env_for, free_port, own_database

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
LOGS = ROOT / "test-results"
PROVINCE = "VN-58"  # the root of config/areas/binh-phuoc.yaml


# ---------------------------------------------------------------------------- users ---


@dataclass(frozen=True)
class User:
    username: str
    password: str = field(repr=False)
    role: str
    area: str
    name: str


def add_user(
    env: dict[str, str], username: str, role: str, area: str = PROVINCE, name: str = ""
) -> User:
    """`ioc users add ... --password-stdin`, the way an administrator makes an account."""
    password = "e2e-" + secrets.token_urlsafe(15)
    args = ["users", "add", username, "--role", role, "--area", area, "--password-stdin"]
    if name:
        args += ["--name", name]
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        input=password + "\n",
        text=True,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, f"ioc users add {username}: {done.stdout}{done.stderr}"
    return User(username, password, role, area, name)


def add_users(env: dict[str, str], tag: str) -> dict[str, User]:
    """One user per role over the whole province (names carry `tag`: the database may be shared)."""
    names = {
        "admin": "Trần Quản Trị",
        "supervisor": "Lê Trưởng Ca",
        "operator": "Nguyễn Văn An",
        "leader": "Phạm Lãnh Đạo",
    }
    return {
        role: add_user(env, f"{tag}-{role}", role, PROVINCE, name) for role, name in names.items()
    }


class Api:
    """The REST API from the test's side, signed in with a bearer token (signs in again when the
    short access token runs out)."""

    def __init__(self, url: str, user: User) -> None:
        self.url, self.user, self.token = url, user, ""

    def _login(self) -> None:
        body = json.dumps({"username": self.user.username, "password": self.user.password})
        req = urllib.request.Request(
            self.url + "/api/v1/auth/login",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            self.token = json.loads(r.read())["access_token"]

    def get(self, path: str) -> Any:
        for attempt in (1, 2):
            if not self.token:
                self._login()
            req = urllib.request.Request(
                self.url + path, headers={"Authorization": f"Bearer {self.token}"}
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code != 401 or attempt == 2:
                    raise
                self.token = ""
        raise AssertionError("unreachable")


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET, without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


# --------------------------------------------------------------------------- centre ---


class Centre:
    def __init__(
        self,
        url: str,
        settings: Settings,
        demo: dict[str, Any],
        env: dict[str, str],
        users: dict[str, User],
    ) -> None:
        self.url, self.settings, self.demo, self.env, self.users = url, settings, demo, env, users
        self.api = Api(url, users["admin"])

    def get(self, path: str) -> Any:
        return self.api.get(path)


@contextmanager
def running_centre(
    services: Settings, prefix: str, log_name: str, *, rollups: bool = False, **env: str
) -> Iterator[Centre]:
    """`ioc api` on a fresh database with a demo day (ioc.bench.dashboard.populate_demo) and one
    user per role; stopped and dropped afterwards. The log: test-results/<log_name>.
    ``rollups``: the demo day and the same hours last week rolled up at once, and `ioc rollups`
    running beside the API (the leaders' summary is read from the rollups); its log:
    test-results/rollups-<log_name>."""
    from ioc.bench.dashboard import populate_demo
    from ioc.db.connect import connect
    from ioc.db.seed import load_geography, seed
    from ioc.rollups.config import RollupSettings
    from ioc.rollups.maintain import Maintainer

    async def prepare() -> tuple[Settings, str, dict[str, Any]]:
        settings, name = await own_database(services, prefix)
        conn = await connect(settings.dsn)
        async with conn.transaction():
            await seed(conn, load_geography(settings.areas_file), sensors=60, seed_value=58)
            demo = await populate_demo(
                conn, settings.areas_file, now=datetime.now(UTC), last_week=rollups
            )
        await conn.close()
        if rollups:
            conn = await connect(settings.dsn, autocommit=True)
            await Maintainer(RollupSettings(lag_seconds=0)).catch_up(conn)
            await conn.close()
        return settings, name, demo

    settings, name, demo = asyncio.run(prepare())
    settings = settings.model_copy(update={"api_port": free_port()})
    child_env = env_for(settings, IOC_DATABASE_URL=str(settings.database_url), **env)
    try:
        users = add_users(child_env, prefix.replace("_", "-"))
        LOGS.mkdir(exist_ok=True)
        with (LOGS / log_name).open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ioc.cli", "api"],
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        roles = [proc]
        if rollups:
            with (LOGS / f"rollups-{log_name}").open("wb") as out:
                roles.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "ioc.cli", "rollups"],
                        env=child_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        url = f"http://127.0.0.1:{settings.api_port}"
        try:
            wait_http(url + "/api/v1/health", proc, 60)
            yield Centre(url, settings, demo, child_env, users)
        finally:
            for p in reversed(roles):
                p.send_signal(signal.SIGTERM)
                p.wait(30)
    finally:
        asyncio.run(drop_database(services, name))


# -------------------------------------------------------------------------- browser ---


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


def watch_errors(page: Page) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]


async def sign_in(page: Page, base: str, user: User, next_path: str = "/") -> None:
    """Open `next_path`, get sent to the sign-in page, type the username and password, press
    Enter, and land back on `next_path`."""
    await page.goto(base + next_path)
    want = urlsplit(base + next_path)
    assert urlsplit(page.url).path == "/login", page.url
    assert urlsplit(page.url).query.startswith("next=" + quote(want.path, safe="")), page.url
    await page.fill("#username", user.username)
    await page.fill("#password", user.password)
    async with page.expect_navigation(url=lambda u: urlsplit(u).path == want.path, timeout=15_000):
        await page.press("#password", "Enter")
    assert urlsplit(page.url).query == want.query, page.url


async def signed_in_page(
    browser: Browser, base: str, user: User, path: str = "/", w: int = 1920, h: int = 1080
) -> Page:
    """A page of its own browser context (its own cookies), signed in through the form."""
    context: BrowserContext = await browser.new_context(viewport={"width": w, "height": h})
    page = await context.new_page()
    watch_errors(page)
    await sign_in(page, base, user, path)
    return page


async def close_page(page: Page) -> None:
    await page.context.close()
