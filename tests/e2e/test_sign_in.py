"""Signing in, in a real Chromium against `ioc api` (its own database, a demo day, one user per
role made with `ioc users add`): the sign-in page and its errors, landing on `next` and never on
another site, what each role is offered, signing out, and the live feed and the session surviving
a lost access cookie, its renewal and the server revoking it.

Access tokens live 15 s here (IOC_ACCESS_TOKEN_MINUTES=0.25) instead of 15 min, so the renewal
a wall relies on for days happens within a test."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.async_api import Browser, Page

from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db.connect import connect
from tests.e2e.conftest import (
    LOGS,
    SHOTS,
    Centre,
    add_user,
    close_page,
    running_centre,
    sign_in,
    signed_in_page,
    status_of,
    watch_errors,
)

pytestmark = pytest.mark.e2e
ACCESS_S = 15


@pytest.fixture(scope="module")
def centre(services: Settings) -> Iterator[Centre]:
    with running_centre(
        services, "ioc_signin", "sign-in-api.log", IOC_ACCESS_TOKEN_MINUTES=str(ACCESS_S / 60)
    ) as c:
        yield c


async def fresh_page(browser: Browser, w: int = 1280, h: int = 900) -> Page:
    context = await browser.new_context(viewport={"width": w, "height": h})
    page = await context.new_page()
    watch_errors(page)
    return page


async def live_map(page: Page) -> None:
    await page.wait_for_function(
        "() => window.iocState && window.iocState.interactive", timeout=20_000
    )
    await page.wait_for_selector('#conn-status[data-state="live"]', timeout=20_000)


async def fire_alert(c: Centre, device_id: str, title: str) -> int:
    conn = await connect(c.settings.dsn)
    async with conn.transaction():
        row = await alerts_db.open_alert(
            conn, rule_id="camera.unhealthy", device_id=device_id, severity="major",
            title=title, title_en=title, value=1.0, status="firing",
        )  # fmt: skip
    await conn.close()
    assert row is not None
    return int(row["id"])


def ioc(c: Centre, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        env=c.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------ sign-in page ---


async def test_wrong_password_shows_the_error_and_echoes_nothing(
    centre: Centre, browser: Browser
) -> None:
    page = await fresh_page(browser, 768, 1024)  # a tablet
    user = centre.users["operator"]
    wrong = "not-the-password-" + user.password[-6:]
    try:
        assert status_of(centre.url + "/wall") == 303  # no session: the server sends to sign-in
        await page.goto(centre.url + "/wall")
        assert urlsplit(page.url).path == "/login"
        assert parse_qs(urlsplit(page.url).query) == {"next": ["/wall"]}
        assert await page.title() == "Trung tâm Điều hành — Đăng nhập"
        # Labelled fields with the autocomplete a password manager needs; focus in the first.
        assert await page.get_attribute("#username", "autocomplete") == "username"
        assert await page.get_attribute("#password", "autocomplete") == "current-password"
        assert await page.get_attribute("#password", "type") == "password"
        assert await page.locator('label[for="username"]').inner_text() == "Tên đăng nhập"
        assert await page.locator('label[for="password"]').inner_text() == "Mật khẩu"
        assert await page.evaluate("document.activeElement.id") == "username"
        await page.screenshot(path=str(SHOTS / "login.png"))

        await page.keyboard.type(user.username)
        await page.press("#username", "Tab")
        await page.keyboard.type(wrong)
        await page.keyboard.press("Enter")
        error = page.locator('#login-error[data-code="bad_credentials"]')
        await error.wait_for(timeout=10_000)
        assert await error.inner_text() == "Sai tên đăng nhập hoặc mật khẩu."
        assert urlsplit(page.url).path == "/login"
        # The password is nowhere: not in the address, the page, the field, the storage.
        assert await page.input_value("#password") == ""
        assert wrong not in page.url
        assert wrong not in await page.content()
        assert wrong not in await page.evaluate(
            "JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
        )
        await page.click("#lang-toggle")
        assert await error.inner_text() == "Wrong username or password."
        assert await page.title() == "Operations Centre — Sign in"
        assert await page.evaluate("[...I18N.missing]") == []
        await page.click("#lang-toggle")

        # Then the right one: on to the wall.
        await page.fill("#password", user.password)
        async with page.expect_navigation(url=re.compile(r"/wall$"), timeout=15_000):
            await page.press("#password", "Enter")
        await page.wait_for_function("() => window.wallState && wallState.refreshes > 0")
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


async def test_locked_and_disabled_accounts_say_so(centre: Centre, browser: Browser) -> None:
    victim = add_user(centre.env, "ioc-signin-locked", "operator")
    disabled = add_user(centre.env, "ioc-signin-disabled", "leader")
    ioc(centre, "users", "disable", disabled.username)
    page = await fresh_page(browser)
    try:
        await page.goto(centre.url + "/login?next=%2F")
        await page.fill("#username", victim.username)
        code = None
        for _ in range(8):  # the account locks after a few wrong passwords (5 by default)
            await page.fill("#password", "wrong-password-123")
            assert (
                await page.get_attribute("#login-error", "data-code") is None
            )  # typing cleared it
            await page.press("#password", "Enter")
            await page.wait_for_selector("#login-error[data-code]", timeout=10_000)
            code = await page.get_attribute("#login-error", "data-code")
            if code == "locked":
                break
            assert code == "bad_credentials", code
        assert code == "locked"
        text = await page.locator("#login-error").inner_text()
        m = re.fullmatch(
            r"Tài khoản tạm khóa do nhập sai nhiều lần\. Thử lại sau (\d+) giây\.", text
        )
        assert m and int(m.group(1)) > 1, text
        assert await page.locator("#login-submit").is_disabled()  # until the wait is over
        await page.wait_for_function(  # and it counts down
            f"() => !document.querySelector('#login-error').textContent.includes(' {m.group(1)} ')",
            timeout=5_000,
        )

        await page.fill("#username", disabled.username)
        await page.fill("#password", disabled.password)
        await page.press("#password", "Enter")
        err = page.locator('#login-error[data-code="disabled"]')
        await err.wait_for(timeout=10_000)
        assert await err.inner_text() == "Tài khoản đã bị vô hiệu hóa. Hãy liên hệ quản trị viên."
        assert urlsplit(page.url).path == "/login"
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


async def test_sign_in_lands_on_next_and_never_on_another_site(
    centre: Centre, browser: Browser
) -> None:
    user = centre.users["supervisor"]
    page = await fresh_page(browser, 1024, 768)
    try:
        # The page asked for, with its query (and its language) kept.
        await sign_in(page, centre.url, user, "/leader?lang=en")
        assert page.url == centre.url + "/leader?lang=en"
        await page.wait_for_function("() => window.leaderState && leaderState.loads > 0")
        assert await page.locator("h1").inner_text() == "Province at a glance"
        # Every `next` that is not a path of this site gives "/".
        cases = {
            "/wall?lang=en": "/wall?lang=en",
            "/leader#top": "/leader#top",
            "//evil.example/x": "/",
            "/\\evil.example": "/",
            "/\t/evil.example": "/",
            "https://evil.example/": "/",
            "javascript:alert(1)": "/",
            "evil.example": "/",
            "/login?next=/wall": "/",
            "/api/v1/auth/me": "/",
            "": "/",
        }
        got = await page.evaluate(
            "cases => Object.fromEntries(Object.keys(cases).map(k => [k, IOCAuth.safeNext(k)]))",
            cases,
        )
        assert got == cases
        await close_page(page)

        # Through the form, a foreign `next` lands on the map, on this site.
        page = await fresh_page(browser)
        await page.goto(centre.url + "/login?next=" + quote("//evil.example/steal", safe=""))
        await page.fill("#username", user.username)
        await page.fill("#password", user.password)
        async with page.expect_navigation(timeout=15_000):
            await page.press("#password", "Enter")
        assert page.url == centre.url + "/"
        await live_map(page)
        # Signed in already: the sign-in page goes straight on (renewing quietly), also here.
        await page.goto(centre.url + "/login?next=https%3A%2F%2Fevil.example%2F")
        await page.wait_for_url(centre.url + "/", timeout=10_000)
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


# ------------------------------------------------------------------------------- roles ---


async def open_camera(page: Page, camera: str) -> None:
    await page.locator("body").press("/")
    await page.keyboard.type(camera)
    await page.keyboard.press("Enter")
    await page.locator(f'#device-panel[data-device-id="{camera}"]').wait_for(timeout=5000)


async def test_leader_sees_no_actions_and_no_pictures(centre: Centre, browser: Browser) -> None:
    leader = centre.users["leader"]
    page = await signed_in_page(browser, centre.url, leader, "/", 1600, 900)
    try:
        await live_map(page)
        assert await page.locator("#alert-feed .alert-item").count() > 0
        assert await page.locator(".ack-btn").count() == 0
        assert await page.locator("#alert-feed .ai-actions, #alert-feed .act-btn").count() == 0
        await page.click(".um-button")
        assert await page.locator(".um-rolename").inner_text() == "Lãnh đạo (chỉ xem)"
        assert await page.locator(".um-username").inner_text() == leader.username
        await page.keyboard.press("Escape")

        camera = centre.demo["black_camera"]
        await open_camera(page, camera)
        placeholder = page.locator(".dp-thumb.no-permission figcaption")
        await placeholder.wait_for(timeout=10_000)
        assert await placeholder.inner_text() == "Không có quyền xem hình ảnh"
        assert await page.locator(".dp-thumb img").is_hidden()
        assert await page.locator("#device-panel .dp-maint button").count() == 0
        await page.screenshot(path=str(LOGS / "sign-in-leader-map.png"))
        thumb = await page.context.request.get(
            f"{centre.url}/api/v1/cameras/{camera}/thumbnail.jpg"
        )
        assert thumb.status == 403

        # The wall, for a leader: the cameras' states, a placeholder for each picture.
        await page.goto(centre.url + "/wall")
        await page.wait_for_function("() => window.wallState && wallState.refreshes > 0")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#wall-grid .tile-noimg')].every(e => e.textContent === 'Không có quyền xem hình ảnh')"
            " && document.querySelectorAll('#wall-grid .tile').length > 0",
            timeout=10_000,
        )
        assert await page.evaluate("wallState.objectUrls.size") == 0
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


async def test_operator_acts_but_does_not_start_maintenance(
    centre: Centre, browser: Browser
) -> None:
    page = await signed_in_page(browser, centre.url, centre.users["operator"], "/", 1600, 900)
    try:
        await live_map(page)
        feed = page.locator("#alert-feed")
        assert await feed.locator(".ack-btn").count() > 0
        for action in ("assign", "note", "resolve"):
            assert await feed.locator(f'.act-btn[data-action="{action}"]').count() > 0, action
        assert await feed.locator('.act-btn[data-action="maint"]').count() == 0
        camera = centre.demo["black_camera"]
        await open_camera(page, camera)
        await page.wait_for_function(
            "() => (() => { const i = document.querySelector('.dp-thumb img'); return i && !i.hidden && i.naturalWidth > 0; })()",
            timeout=10_000,
        )
        assert await page.locator("#device-panel .dp-maint button").count() == 0
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


# ---------------------------------------------------------------------------- sign out ---


async def test_sign_out_returns_to_sign_in_and_the_api_refuses(
    centre: Centre, browser: Browser
) -> None:
    admin = centre.users["admin"]
    page = await signed_in_page(browser, centre.url, admin, "/", 1600, 900)
    other = await page.context.new_page()  # a second tab of the same browser
    try:
        await live_map(page)
        await other.goto(centre.url + "/wall")
        await other.wait_for_function("() => window.wallState && wallState.refreshes > 0")

        await page.click(".um-button")
        panel = page.locator(".um-panel")
        assert await panel.locator(".um-username").inner_text() == admin.username
        assert await panel.locator(".um-rolename").inner_text() == "Quản trị hệ thống"
        assert await panel.locator(".um-area").inner_text() == "Bình Phước"
        assert await page.locator(".um-name").inner_text() == "Trần Quản Trị"
        await page.screenshot(path=str(SHOTS / "map-user-menu.png"))
        signout = panel.get_by_role("button", name="Đăng xuất")
        async with page.expect_navigation(url=re.compile(r"/login\?"), timeout=10_000):
            await signout.click()
        q = parse_qs(urlsplit(page.url).query)
        assert q == {"next": ["/"], "reason": ["signed_out"]}
        assert await page.locator("#login-info").inner_text() == "Bạn đã đăng xuất."
        assert await page.locator("#username").is_visible()

        # The session is over: the API says 401, the cookies are gone, the pages send to sign-in.
        for path in ("/api/v1/devices", "/api/v1/auth/me"):
            assert (await page.context.request.get(centre.url + path)).status == 401, path
        names = {c["name"] for c in await page.context.cookies()}
        assert not names & {"ioc_access", "ioc_refresh"}, names
        await page.goto(centre.url + "/")
        assert urlsplit(page.url).path == "/login"
        # The other tab left too.
        await other.wait_for_url(re.compile(r"/login\?"), timeout=10_000)
    finally:
        await close_page(page)


# -------------------------------------------------------------------------- live feed ---


async def renewal_after(page: Page, renewed: float, within_s: float) -> float:
    """Wait until the session was renewed after `renewed` (ms); the new renewal time."""
    await page.wait_for_function(
        f"() => Number(localStorage.getItem('ioc.auth.renewedAt')) > {renewed}",
        timeout=within_s * 1000,
    )
    return float(await page.evaluate("Number(localStorage.getItem('ioc.auth.renewedAt'))"))


async def test_live_feed_after_sign_in_and_the_session_renewing_itself(
    centre: Centre, browser: Browser
) -> None:
    page = await signed_in_page(browser, centre.url, centre.users["operator"], "/", 1600, 900)
    context = page.context
    alerted = {a["device_id"] for a in centre.get("/api/v1/alerts?status=open")}
    cameras = [
        d["id"]
        for d in centre.get("/api/v1/devices")
        if d["kind"] == "camera" and d["id"] not in alerted
    ]
    try:
        await live_map(page)
        # Over the websocket, signed in by the cookie.
        first = await fire_alert(centre, cameras[0], "Camera bị che (1)")
        await page.locator(f'#alert-feed .alert-item[data-alert-id="{first}"]').wait_for(
            timeout=10_000
        )

        # No token within the page's reach: HttpOnly cookies, nothing in storage or addresses.
        access = next(c for c in await context.cookies() if c["name"] == "ioc_access")
        assert access["httpOnly"] and access["sameSite"] == "Strict"
        assert "ioc_access" not in await page.evaluate("document.cookie")
        stored = await page.evaluate(
            "JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
        )
        assert access["value"] not in stored

        # Renewed by itself before the access cookie runs out (80 % of 15 s), again and again:
        # what keeps a wall signed in for days.
        renewed = await page.evaluate("Number(localStorage.getItem('ioc.auth.renewedAt'))")
        for _ in range(2):
            renewed = await renewal_after(page, renewed, ACCESS_S)

        # The access cookie is lost just after that renewal: the socket is refused (4401), the
        # page renews at once (not 12 s later, on the timer) and resumes with since=.
        since = await page.evaluate("iocState.lastEventId")
        await context.clear_cookies(name="ioc_access")
        await page.evaluate("iocState.stream.start()")
        timer_due = renewed + 0.8 * ACCESS_S * 1000
        renewed = await renewal_after(page, renewed, ACCESS_S)
        assert renewed < timer_due - 1000, "renewed by the timer, not after the socket's 4401"
        await page.wait_for_function(f"() => iocState.connected && iocState.lastEventId >= {since}")
        assert any(c["name"] == "ioc_access" for c in await context.cookies())
        second = await fire_alert(centre, cameras[1], "Camera bị che (2)")
        await page.locator(f'#alert-feed .alert-item[data-alert-id="{second}"]').wait_for(
            timeout=10_000
        )
        # ... and a REST call without it: 401, renew, the same call again, answered.
        await context.clear_cookies(name="ioc_access")
        assert await page.evaluate("IOC.getJSON('devices').then(d => d.length)") > 0

        # The server ends the session (the account is disabled): the socket closes (4401),
        # renewing is refused, and the page goes to sign-in keeping where it was.
        ioc(centre, "users", "disable", centre.users["operator"].username)
        try:
            await page.wait_for_url(re.compile(r"/login\?"), timeout=30_000)
            q = parse_qs(urlsplit(page.url).query)
            assert q == {"next": ["/"], "reason": ["expired"]}
            assert await page.locator("#login-info").inner_text() == (
                "Phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại."
            )
        finally:
            ioc(centre, "users", "enable", centre.users["operator"].username)
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)
