"""The whole centre (`ioc dev`) plus a real Chromium: a congestion caused at the simulator shows
up live on the map page, an acknowledgement on one screen shows on another, Ctrl-C stops all.
Both screens are operators who signed in through the sign-in page (made with `ioc users add`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ioc.bench.common import wait_http
from ioc.config import Settings
from tests.conftest import env_for
from tests.e2e.conftest import Api, User, add_user, close_page, signed_in_page

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.fixture(scope="module")
def operator(services: Settings) -> User:
    """An operator of the whole province, in the session's database (the one `ioc dev` uses)."""
    return add_user(env_for(services), "live-operator", "operator", "VN-58", "Đỗ Thị Trực")


@pytest.fixture(scope="module")
def centre(services: Settings) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    log = ARTIFACTS / "ioc-dev.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "dev"],
            # Two small cameras: the whole centre runs, within the test machine's two cores.
            env=env_for(
                services, IOC_SIM_CAMERAS="2", IOC_SIM_CAMERA_SIZE="320x180", IOC_SIM_CAMERA_FPS="5"
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{services.api_port}"
        wait_http(url + "/api/v1/health", proc, 90)  # log: test-results/ioc-dev.log
        try:
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)


async def test_congestion_alert_appears_live_and_ack_reaches_every_screen(
    services: Settings,
    centre: tuple[str, subprocess.Popen[bytes]],
    operator: User,
    browser: Browser,
) -> None:
    url, _ = centre
    names = {d["name"] for d in Api(url, operator).get("/api/v1/devices?area_id=dong-xoai")}
    assert names
    # Two screens, each its own browser context signed in through the sign-in page.
    wall = await signed_in_page(browser, url, operator, "/", 1600, 900)
    other = await signed_in_page(browser, url, operator, "/", 1280, 800)
    try:
        for page in (wall, other):
            await page.wait_for_selector('#conn-status[data-state="live"]', timeout=20_000)
        # Markers for every seeded sensor, no tile server involved.
        await wall.wait_for_function(
            "() => window.iocState && [...window.iocState.devices.values()]"
            f".filter(d => d.kind === 'traffic_sensor').length === {services.sim_sensors}",
            timeout=20_000,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ioc.cli",
                "simulate",
                "congest",
                "--area",
                "dong-xoai",
                "--duration",
                "120",
            ],
            env=env_for(services),
            check=True,
            timeout=30,
        )
        caused = time.monotonic()
        firing = wall.locator('#alert-feed .alert-item[data-status="firing"]')
        await firing.first.wait_for(timeout=60_000)
        seen_after = time.monotonic() - caused
        text = await firing.first.inner_text()
        assert any(name in text for name in names), text
        assert seen_after < 45, f"alert took {seen_after:.1f}s to show"
        await wall.screenshot(path=str(ARTIFACTS / "e2e-alert.png"))

        alert_id = await firing.first.get_attribute("data-alert-id")
        await other.locator(f'#alert-feed .alert-item[data-alert-id="{alert_id}"]').wait_for(
            timeout=20_000
        )
        await wall.locator(f'.ack-btn[data-alert-id="{alert_id}"]').click()
        await other.locator(
            f'#alert-feed .alert-item[data-alert-id="{alert_id}"][data-status="acknowledged"]'
        ).wait_for(timeout=15_000)
    finally:
        await close_page(wall)
        await close_page(other)


def test_ctrl_c_stops_everything(
    services: Settings, centre: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, proc = centre
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert len(children) >= 6  # ingest mqtt+rtsp, alerts, api, traffic and camera simulators
    proc.send_signal(signal.SIGINT)
    assert proc.wait(40) == 0
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ), f"child {pid} still running"
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/api/v1/health", timeout=2)
