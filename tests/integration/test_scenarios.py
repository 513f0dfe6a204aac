"""The six demo scenarios against the real centre (subprocess roles, real PostgreSQL+TimescaleDB,
Mosquitto and GStreamer cameras), through the `ioc scenario run` command; and a malformed
scenario is refused with file:line:reason before anything is published.

Two ways in, both used: three scenarios run side by side against a centre this test starts
(as `ioc dev` would be running), the other three with `--start-centre --together` (their own
database and broker). Reports and role logs go to test-results/scenarios/.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ioc.config import PROJECT_ROOT, Settings
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import make_fleet
from ioc.scenario.centre import Centre, merge_specs
from ioc.scenario.load import load_scenario
from tests.conftest import drop_database, env_for, own_database

pytestmark = pytest.mark.integration
SCENARIOS = PROJECT_ROOT / "scenarios"
ARTIFACTS = PROJECT_ROOT / "test-results" / "scenarios"
ON_A_RUNNING_CENTRE = ("rush-hour-dong-xoai", "flapping-sensor", "garbage-sensor")
WITH_THEIR_OWN_CENTRE = ("network-outage-phuoc-long", "storm-north-east", "camera-covered-night")


def files(names: tuple[str, ...]) -> list[str]:
    return [str(SCENARIOS / f"{n}.yaml") for n in names]


def scenario_run(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "scenario", "run", "--together", "--json", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tag = "own-centre" if "--start-centre" in args else "running-centre"
    (ARTIFACTS / f"{tag}.log").write_text(done.stderr, encoding="utf-8")
    assert done.stdout, f"no report (exit {done.returncode}): {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(done.stdout)
    (ARTIFACTS / f"{tag}.json").write_text(done.stdout, encoding="utf-8")
    failed = [
        f"{s['scenario']}: {e['label']}: {e['detail']}"
        for s in report["scenarios"]
        for e in s["expectations"]
        if not e["passed"]
    ]
    assert report["passed"] and done.returncode == 0, "\n".join(failed) or done.stderr[-2000:]
    return report


def ioc(settings: Settings, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", "scenario", *argv],
        env=env_for(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def forget_retained(settings: Settings, device_ids: list[str]) -> None:
    """Leave the session's broker as we found it: no retained availability of our sensors."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    for info in [
        c.publish(wire.availability_topic(d), b"", qos=1, retain=True) for d in device_ids
    ]:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


async def test_scenarios_against_a_running_centre(services: Settings) -> None:
    loaded = [load_scenario(Path(f)) for f in files(ON_A_RUNNING_CENTRE)]
    spec = merge_specs([(x.scenario.name, x.scenario.centre) for x in loaded])
    settings, name = await own_database(services, "scenarios")
    centre = Centre(settings, spec, log_dir=ARTIFACTS / "running-centre")
    try:
        await asyncio.to_thread(centre.start)
        started = time.monotonic()
        report = await asyncio.to_thread(scenario_run, files(ON_A_RUNNING_CENTRE), centre.env, 150)
        assert time.monotonic() - started < 90
    finally:
        await asyncio.to_thread(centre.stop)
        fleet = make_fleet(load_geography(settings.areas_file), spec.sensors, settings.sim_seed)
        await asyncio.to_thread(forget_retained, settings, [s.id for s in fleet])
        await drop_database(services, name)
    assert {s["scenario"] for s in report["scenarios"]} == set(ON_A_RUNNING_CENTRE)
    assert all(a["ok"] for s in report["scenarios"] for a in s["actions"])


def test_scenarios_with_their_own_centre(services: Settings) -> None:
    report = scenario_run(
        ["--start-centre", "--logs", str(ARTIFACTS), *files(WITH_THEIR_OWN_CENTRE)],
        env_for(services),
        240,
    )
    assert {s["scenario"] for s in report["scenarios"]} == set(WITH_THEIR_OWN_CENTRE)


BAD = """\
version: 1
name: bad
title: a scenario with a mistake on line 9
timeline:
  - at: 0
    id: jam
    do: congestion
    area: dong-xoai
    speed_kmh: 500
expect:
  - alert: traffic.congestion
    area: dong-xoai
    within_s: 30
"""


def test_a_malformed_scenario_publishes_nothing(services: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    good = tmp_path / "good.yaml"
    good.write_text(BAD.replace("speed_kmh: 500", "speed_kmh: 5"), encoding="utf-8")
    unknown = tmp_path / "unknown-device.yaml"
    unknown.write_text(
        BAD.replace("area: dong-xoai\n    speed_kmh: 500", "device: ts-09999"), encoding="utf-8"
    )
    got: list[str] = []
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.username_pw_set(services.mqtt_sim_user, services.mqtt_sim_password)
    c.connect(services.mqtt_host, services.mqtt_port)
    c.loop_start()
    c.subscribe("ioc/#", qos=1)
    time.sleep(1.0)  # retained messages of earlier tests arrive first: not ours to judge
    c.on_message = lambda _c, _u, m: got.append(m.topic)
    try:
        procs = {
            "bad": ioc(services, "run", str(good), str(bad)),  # all files checked first
            "unknown": ioc(services, "run", str(unknown)),
            "check": ioc(services, "check", str(good), str(bad)),
        }
        runs = {name: (p.wait(60), *p.communicate()) for name, p in procs.items()}
        time.sleep(0.5)
    finally:
        c.disconnect()
        c.loop_stop()
    assert got == []
    code, _, err = runs["bad"]
    assert code == 2 and "nothing was published" in err
    assert f"ioc: error: {bad}:9:16: timeline[0].speed_kmh: " in err
    assert "less than or equal to 300" in err
    code, _, err = runs["unknown"]
    assert code == 2 and "nothing was published" in err
    assert (
        f"ioc: error: {unknown}:8:13: timeline[0].device: 'ts-09999' is not a registered"
        " traffic sensor" in err
    )
    code, out, err = runs["check"]
    assert code == 2 and f"{good}: ok" in out and f"{bad}:9:16:" in err
