"""The three screens in a real Chromium against `ioc api` and a database of their own, filled with
a demo day (ioc.bench.dashboard.populate_demo): operator actions reach a second screen, the wall
promotes a camera that gets an alert, the leader page shows the API's numbers, both languages
have every string. Screenshots go to docs/screenshots/ (the ones in the docs come from here).

Every browser context signs in through the sign-in page first (tests/e2e/conftest.py): the
supervisor on the map (every action, maintenance included), an operator on the wall, a leader on
the leaders' summary. The live path from the simulator to the map is tests/e2e/test_live_alert.py
(ioc dev); signing in itself and what each role sees: tests/e2e/test_sign_in.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db.connect import connect
from tests.e2e.conftest import SHOTS, Centre, close_page, running_centre, signed_in_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def centre(services: Settings) -> Iterator[Centre]:
    with running_centre(services, "ioc_dash", "dashboard-api.log", rollups=True) as c:
        yield c


async def open_page(
    browser: Browser, c: Centre, path: str, w: int, h: int, role: str = "operator"
) -> Page:
    """A fresh browser context signed in (through the sign-in form) as `role`, on `path`."""
    return await signed_in_page(browser, c.url, c.users[role], path, w, h)


async def map_page(
    browser: Browser,
    c: Centre,
    w: int = 1920,
    h: int = 1080,
    lang: str = "vi",
    role: str = "supervisor",
) -> Page:
    page = await open_page(browser, c, f"/?lang={lang}", w, h, role)
    await page.wait_for_function(
        "() => window.iocState && window.iocState.interactive", timeout=20_000
    )
    await page.wait_for_selector('#conn-status[data-state="live"]', timeout=20_000)
    return page


async def no_raw_strings(page: Page) -> dict[str, list[str]]:
    """Keys with no string in this language, and any text on screen that is a key itself."""
    return await page.evaluate(
        """() => {
            const keys = new Set([...I18N.keys('vi'), ...I18N.keys('en')]);
            const raw = [];
            const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (walk.nextNode()) {
                const s = walk.currentNode.textContent.trim();
                if (keys.has(s) || /^[a-z]+(\\.[a-zA-Z_]+)+$/.test(s) || s === 'null' || s === 'undefined') raw.push(s);
            }
            for (const el of document.querySelectorAll('[placeholder],[title],[aria-label]'))
                for (const a of ['placeholder', 'title', 'aria-label']) {
                    const v = el.getAttribute(a);
                    if (v && keys.has(v)) raw.push(a + ':' + v);
                }
            if (keys.has(document.title)) raw.push('title:' + document.title);
            return {missing: [...I18N.missing], raw};
        }"""
    )


# ------------------------------------------------------------------------------ map ---


async def test_map_devices_grouped_feed_panel_and_keyboard(
    centre: Centre, browser: Browser
) -> None:
    devices = centre.get("/api/v1/devices")
    page = await map_page(browser, centre)
    try:
        counts = await page.evaluate(
            "({d: iocState.devices.size, s: iocState.sites.size, a: iocState.alerts.size})"
        )
        assert counts["d"] == sum(1 for d in devices if d["kind"] != "site")
        assert counts["s"] == sum(1 for d in devices if d["kind"] == "site")
        assert counts["a"] == len(centre.get("/api/v1/alerts?status=open"))
        assert await page.evaluate("iocState.layer.drawCount") > 0
        # Root cause: the site's alert carries its devices' alerts nested under it.
        site = page.locator(
            f'#alert-feed > .alert-item[data-alert-id="{centre.demo["site_alert"]}"]'
        )
        await site.locator("summary").click()
        assert await site.locator(".ai-children .alert-item").count() >= 2
        assert await page.locator("#alert-feed > .alert-item.child").count() == 0
        await page.screenshot(path=str(SHOTS / "map.png"))
        # Zoomed out, devices gather by area: the worst state's shape and the alert count.
        await page.evaluate("iocState.map.setZoom(9, {animate: false})")
        await page.wait_for_function("() => iocState.layer.clustered()")
        await page.wait_for_timeout(300)
        await page.screenshot(path=str(SHOTS / "map-clusters.png"))

        # Keyboard: "/" to search, arrows and Enter to open a device, Escape to close it.
        black = centre.demo["black_camera"]
        await page.locator("body").press("/")
        await page.keyboard.type(black)
        await page.keyboard.press("Enter")
        panel = page.locator(f'#device-panel[data-device-id="{black}"]')
        await panel.wait_for(timeout=5000)
        await page.wait_for_function(
            "() => (() => { const i = document.querySelector('.dp-thumb img'); return i && !i.hidden && i.naturalWidth > 0; })()",
            timeout=10_000,
        )
        assert "Màn hình đen" in await panel.inner_text()
        await page.wait_for_timeout(600)  # the chart's series
        await page.screenshot(path=str(SHOTS / "map-device-panel.png"))
        await page.keyboard.press("Escape")
        await page.locator("#device-panel").wait_for(state="hidden", timeout=3000)

        # Filters: only cameras, then only critical.
        await page.locator('.kind-toggle[data-kind="traffic_sensor"]').click()
        await page.locator('.kind-toggle[data-kind="site"]').click()
        shown = await page.evaluate("iocState.layer._items.length")
        assert shown == sum(1 for d in devices if d["kind"] == "camera")
        await page.locator("#filter-reset").click()
        await page.select_option("#filter-severity", "critical")
        assert await page.evaluate("iocState.layer._items.map(i => i.state)") == ["critical"]
        # The feed re-renders on its own tick: wait for it rather than read it at once.
        await page.wait_for_function(
            "() => document.querySelectorAll('#alert-feed > .alert-item').length === 1",
            timeout=10_000,
        )
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


async def test_operator_actions_reach_a_second_screen(centre: Centre, browser: Browser) -> None:
    a = await map_page(browser, centre, 1600, 900)
    b = await map_page(browser, centre, 1280, 800)
    try:
        alert_id = centre.demo["congestion_alerts"][1]
        item_a = a.locator(f'#alert-feed .alert-item[data-alert-id="{alert_id}"]')
        item_b = b.locator(f'#alert-feed .alert-item[data-alert-id="{alert_id}"]')
        await item_b.wait_for()

        await item_a.locator('.act-btn[data-action="assign"]').click()
        await a.keyboard.type("Tổ CSGT số 5")
        await a.keyboard.press("Enter")
        await b.wait_for_function(
            f"() => document.querySelector('#alert-feed .alert-item[data-alert-id=\"{alert_id}\"] .ai-assignee')?.textContent.includes('Tổ CSGT số 5')",
            timeout=10_000,
        )
        await item_a.locator('.act-btn[data-action="note"]').click()
        await a.keyboard.type("Đã cử xe đến hiện trường")
        await item_a.locator('.ai-form button[type="submit"]').click()
        await item_b.locator(".ai-note", has_text="Đã cử xe đến hiện trường").wait_for(
            timeout=10_000
        )

        device = await item_a.get_attribute("data-device-id")
        await item_a.locator('.act-btn[data-action="maint"]').click()
        await a.keyboard.type("Sửa cảm biến")
        await item_a.locator('.ai-form button[type="submit"]').click()
        await b.wait_for_function(
            f"() => iocState.maintenance.some(m => m.device_id === '{device}')", timeout=15_000
        )

        await item_a.locator('.act-btn[data-action="resolve"]').click()
        await a.keyboard.type("Đã thông xe")
        await a.keyboard.press("Enter")
        await b.locator(
            f'#alert-feed .alert-item[data-alert-id="{alert_id}"][data-status="resolved"]'
        ).wait_for(timeout=10_000)
        await item_b.wait_for(state="detached", timeout=10_000)
        # No alert left on it: the second screen now shows the device as in maintenance.
        await b.wait_for_function(
            f"() => iocState.devices.get('{device}')._state === 'maintenance'", timeout=5_000
        )
        history = centre.get(f"/api/v1/alerts/{alert_id}/history")
        assert [h["kind"] for h in history][-3:] == [
            "alert.assigned",
            "alert.note",
            "alert.resolved",
        ]
        assert not a.errors and not b.errors  # type: ignore[attr-defined]
    finally:
        await close_page(a)
        await close_page(b)


# ----------------------------------------------------------------------------- wall ---


async def test_wall_promotes_an_alerted_camera_and_frees_its_pictures(
    centre: Centre, browser: Browser
) -> None:
    page = await open_page(browser, centre, "/wall", 1920, 1080, "operator")
    try:
        await page.wait_for_function("() => window.wallState && window.wallState.refreshes > 0")
        await page.wait_for_function("() => wallState.thumbLoads >= 8", timeout=15_000)
        await page.wait_for_selector('#conn-status[data-state="live"]', timeout=10_000)
        tiles = page.locator("#wall-grid .tile")
        first = await tiles.first.get_attribute("data-device-id")
        assert first == centre.demo["black_camera"]  # the demo's only firing camera alert
        await page.screenshot(path=str(SHOTS / "wall-1080.png"))
        last = await tiles.last.get_attribute("data-device-id")
        assert last != first

        conn = await connect(centre.settings.dsn)
        async with conn.transaction():
            row = await alerts_db.open_alert(
                conn, rule_id="camera.unhealthy", device_id=last, severity="critical",
                title="Camera bị che", title_en="Camera covered", value=1.0, status="firing",
            )  # fmt: skip
        await conn.close()
        assert row is not None
        promoted = time.monotonic()
        await page.wait_for_function(
            f"() => document.querySelector('#wall-grid .tile').dataset.deviceId === '{last}'",
            timeout=15_000,
        )
        assert time.monotonic() - promoted < 8  # live: the event, not the 15-s re-read
        assert await tiles.first.get_attribute("data-state") == "critical"
        await page.locator("#ticker .tk", has_text="Camera bị che").wait_for(timeout=5000)

        # Pictures keep coming (every 10 s) but their object URLs are freed: one per tile at most.
        # (A tile holds two for the moment between a new picture's fetch and its onload.)
        loads = await page.evaluate("wallState.thumbLoads")
        peak, deadline = 0, time.monotonic() + 30
        while await page.evaluate("wallState.thumbLoads") < loads + 8:
            assert time.monotonic() < deadline, "the wall stopped refreshing its pictures"
            live = await page.evaluate("({u: wallState.objectUrls.size, t: wallState.tiles.size})")
            assert live["u"] <= 2 * live["t"], live
            peak = max(peak, live["u"])
            await page.wait_for_timeout(250)
        await page.wait_for_function(
            "() => wallState.objectUrls.size <= wallState.tiles.size", timeout=10_000
        )
        assert peak >= 8  # pictures were really held (and then let go)

        await page.set_viewport_size({"width": 3840, "height": 2160})
        await page.wait_for_timeout(1500)
        shown = await page.evaluate("({n: wallState.cameras.size, v: wallState.visible.length})")
        assert shown["v"] == shown["n"], shown  # a 4K wall has room for all twelve at once
        await page.screenshot(path=str(SHOTS / "wall-4k.jpg"), type="jpeg", quality=80)
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


# --------------------------------------------------------------------------- leader ---


async def page_metrics(page: Page) -> dict[str, tuple[Any, str]]:
    return await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('main [data-metric]')].map(
            el => [el.dataset.metric, [JSON.parse(el.dataset.value), el.textContent.trim()]]))"""
    )


def api_value(summary: dict[str, Any], path: str) -> Any:
    node: Any = summary
    parts = path.split(".")
    if parts[0] == "areas":
        node, parts = next(a for a in summary["areas"] if a["id"] == parts[1]), parts[2:]
    elif parts[0] == "hotspots":
        node, parts = summary["hotspots"][int(parts[1])], parts[2:]
    for p in parts:
        node = node[p]
    return node


def bucket(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp()) // 300


def same_moment(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two reads of the summary about the same moment: the same 5-minute bucket (the live
    figures), and the rollups as far along (`ioc rollups` runs beside the API)."""
    return bucket(a["generated_at"]) == bucket(b["generated_at"]) and all(
        a[k] == b[k] for k in ("traffic_through", "availability_through")
    )


def vi_number(v: float | int, digits: int) -> str:
    text = f"{v:,.{digits}f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    return text.rstrip("0").rstrip(",") if digits and "," in text else text


@pytest.mark.parametrize(("w", "h", "name"), [(768, 1024, "portrait"), (1024, 768, "landscape")])
async def test_leader_page_shows_the_api_numbers(
    centre: Centre, browser: Browser, w: int, h: int, name: str
) -> None:
    page = await open_page(browser, centre, "/leader", w, h, "leader")
    try:
        await page.wait_for_function("() => window.leaderState && window.leaderState.loads > 0")
        for loads in range(2, 6):  # the page's read and the test's must be of the same moment
            shown = await page_metrics(page)
            mine = await page.evaluate("leaderState.summary")
            api = centre.get("/api/v1/summary/leader")
            if same_moment(mine, api):
                break
            await page.click("#ld-refresh")
            await page.wait_for_function(f"() => leaderState.loads >= {loads}")
        assert same_moment(mine, api), "the figures kept changing between two reads"
        assert not api["rollups_stale"] and sum(p["vehicles"] for p in api["trend"]) > 0
        assert len(shown) >= 20 + 5 * len(api["areas"])
        for path, (value, text) in shown.items():
            assert value == api_value(api, path), path
            if path.endswith("_pct"):
                assert text == ("–" if value is None else vi_number(value, 1) + " %"), (path, text)
        # Touch targets: every button on screen at least 48 px high (the user menu's too).
        heights = await page.evaluate(
            "[...document.querySelectorAll('button')].filter(b => b.checkVisibility())"
            ".map(b => b.getBoundingClientRect().height)"
        )
        assert min(heights) >= 48, heights
        assert not await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        await page.screenshot(path=str(SHOTS / f"leader-{name}.png"), full_page=True)
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)


# -------------------------------------------------------------------------- locales ---


@pytest.mark.parametrize("lang", ["vi", "en"])
async def test_every_string_exists_in_both_languages(
    centre: Centre, browser: Browser, lang: str
) -> None:
    page = await map_page(browser, centre, 1920, 1080, lang)
    try:
        # Open what is built on demand: a form in the feed, the device panel.
        item = page.locator("#alert-feed > .alert-item").first
        await item.locator('.act-btn[data-action="maint"]').click()
        await page.locator("summary").first.click()
        await page.evaluate(
            "document.querySelector('#alert-feed .alert-item[data-device-id^=\"ts-\"]').click()"
        )
        await page.locator("#device-panel .dp-chart").wait_for()
        await page.wait_for_function(
            "() => iocState.map.getZoom() >= 13 && !iocState.map._animatingZoom"
        )
        await page.wait_for_timeout(900)  # the chart's series, the last frames of the flight
        assert await no_raw_strings(page) == {"missing": [], "raw": []}
        if lang == "en":
            await page.screenshot(path=str(SHOTS / "map-en.png"))
            # The toggle switches back at once, no reload.
            await page.click("#lang-toggle")
            assert await page.locator("#feed-title").inner_text() == "Cảnh báo trực tiếp"
        for path, ready in (
            ("/wall", "wallState.refreshes > 0"),
            ("/leader", "leaderState.loads > 0"),
        ):
            await page.goto(f"{centre.url}{path}?lang={lang}")
            await page.wait_for_function(
                f"() => (() => {{ try {{ return {ready}; }} catch (e) {{ return false; }} }})()"
            )
            await page.wait_for_timeout(300)
            assert await no_raw_strings(page) == {"missing": [], "raw": []}, path
        assert not page.errors  # type: ignore[attr-defined]
    finally:
        await close_page(page)
