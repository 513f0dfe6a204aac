"""Judging expectations from recorded rows (pure: the verdicts need no centre)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ioc.domain.rules import Rule
from ioc.scenario.expect import AlertEvent, Check, DeadLetter, OpenAlert, judge, resolve
from ioc.scenario.plan import Device, PlanError, World
from ioc.scenario.schema import Scenario

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
SILENT = Rule(
    id="device.silent", metric="silence_s", op="above", threshold=60, clear=20,
    severity="minor", title="silent", title_en="silent",
)  # fmt: skip


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def world() -> World:
    devices = [
        Device("s1", "traffic_sensor", "a1"),
        Device("s2", "traffic_sensor", "a1"),
        Device("s3", "traffic_sensor", "b"),
        Device("c1", "camera", "a1", camera=1),
        Device("site-a1", "site", "a1"),
    ]
    return World({"p": None, "a1": "p", "b": "p"}, {d.id: d for d in devices})


def checks(*expect: dict[str, Any], steps: int = 1) -> list[Check]:
    sc = Scenario.model_validate(
        {
            "version": 1,
            "name": "t",
            "title": "t",
            "timeline": [{"at": 5 * i, "id": f"s{i}", "do": "clear_faults"} for i in range(steps)],
            "expect": list(expect),
        }
    )
    return resolve(sc, world(), {"device.silent": SILENT})


def ev(
    n: int, t: float, device: str, status: str = "firing", rule: str = "device.silent"
) -> AlertEvent:
    area = "b" if device == "s3" else "a1"
    return AlertEvent(n, at(t), f"alert.{status}", n, rule, device, area, status)


def verdict(c: Check, now: float, *, finished: bool = False, **rows: Any) -> Any:
    return judge(c, t0=T0, now=at(now), finished=finished, step_times={0: at(1)}, **rows)


def test_an_alert_in_time_passes_with_its_measured_time() -> None:
    (c,) = checks({"alert": "device.silent", "device": "s1", "within_s": 10, "after": "s0"})
    assert c.devices == frozenset({"s1"}) and c.need == 1 and c.after == 0
    v = verdict(c, 4, events=[ev(1, 0.5, "s1"), ev(2, 3.5, "s1"), ev(3, 3.6, "s2")])
    assert v.passed is True and v.measured_s == pytest.approx(2.5)  # the event before is ignored
    assert v.devices == ["s1"]


def test_an_alert_not_seen_is_undecided_then_fails_at_its_deadline() -> None:
    (c,) = checks({"alert": "device.silent", "device": "s1", "within_s": 10})
    assert verdict(c, 5).passed is None
    stale = [OpenAlert(7, "device.silent", "s1", "a1", "firing", at(-100))]
    v = verdict(c, 11, open_at_start=stale)
    assert v.passed is False
    assert "0 of 1" in v.detail and "#7 on s1 was already firing" in v.detail


def test_a_late_alert_fails_with_how_late() -> None:
    (c,) = checks({"alert": "device.silent", "device": "s1", "within_s": 3})
    v = verdict(c, 20, events=[ev(1, 7, "s1")])
    assert v.passed is False and v.measured_s == 7 and v.detail.startswith("too late")


def test_count_all_means_every_device_of_the_rules_kind_in_the_area() -> None:
    (c,) = checks(
        {"alert": "device.silent", "area": "a1", "status": "suppressed", "count": "all",
         "within_s": 10}
    )  # fmt: skip
    assert c.need == 2 and c.devices == frozenset({"s1", "s2"})
    events = [ev(1, 1, "s1", "suppressed"), ev(2, 2, "s1", "firing"), ev(3, 4, "s2", "suppressed")]
    v = verdict(c, 5, events=events)
    assert v.passed is True and v.measured_s == 4
    (one,) = checks({"alert": "device.silent", "area": "a1", "within_s": 10})
    assert one.need == 1 and one.devices is None and one.areas == frozenset({"a1"})


def test_no_alert_passes_only_at_the_end_and_fails_at_once() -> None:
    (c,) = checks({"no_alert": "device.silent", "area": "a1"})
    assert verdict(c, 5, events=[ev(1, 2, "s3")]).passed is None  # another area
    assert verdict(c, 5, events=[ev(1, 2, "s1", "suppressed")]).passed is None  # not paged
    assert verdict(c, 30, finished=True, events=[ev(1, 2, "s3")]).passed is True
    v = verdict(c, 5, events=[ev(1, 2, "s3"), ev(2, 3, "s2", "firing")])
    assert v.passed is False and v.measured_s == 3 and v.devices == ["s2"]
    assert "device.silent #2 firing on s2" in v.detail


def test_no_alert_counts_what_was_already_open_at_the_start() -> None:
    (c,) = checks({"no_alert": "any", "device": "c1", "status": ["firing"]})
    stale = [OpenAlert(4, "camera.unhealthy", "c1", "a1", "firing", at(-9))]
    v = verdict(c, 1, open_at_start=stale)
    assert v.passed is False and "already firing at the start" in v.detail


def test_a_no_alert_window_ends_on_its_own() -> None:
    (c,) = checks({"no_alert": "any", "for_s": 5, "after": "s0"})
    assert verdict(c, 3).passed is None
    assert verdict(c, 7, events=[ev(1, 6.5, "s1")]).passed is True  # after the window


def test_dead_letters_need_every_reason_from_the_device() -> None:
    (c,) = checks({"dead_letters": ["bad_json", "too_large"], "device": "s1", "within_s": 10})
    topic = "ioc/v1/traffic/s1/observation"
    letters = [
        DeadLetter(1, at(1), topic, "bad_json"),
        DeadLetter(2, at(2), "ioc/v1/traffic/s2/observation", "too_large"),
    ]
    assert verdict(c, 3, dead_letters=letters).passed is None
    v = verdict(c, 11, dead_letters=letters)
    assert v.passed is False and v.detail == "missing too_large; seen bad_json"
    letters.append(DeadLetter(3, at(6), topic, "too_large"))
    v = verdict(c, 7, dead_letters=letters)
    assert v.passed is True and v.measured_s == 6


def test_a_step_that_never_ran_fails_its_expectations() -> None:
    (c,) = checks({"alert": "device.silent", "within_s": 5, "after": "s1"}, steps=2)
    v = judge(c, t0=T0, now=at(9), finished=True, step_times={0: at(0)})
    assert v.passed is False and "never ran" in v.detail


def test_unknown_devices_cameras_and_areas_are_plan_errors() -> None:
    with pytest.raises(PlanError) as err:
        checks({"alert": "device.silent", "devices": ["s1", "zz"], "within_s": 5})
    assert err.value.loc == ("expect", 0, "devices", 1)
    with pytest.raises(PlanError) as err:
        checks({"no_alert": "any", "camera": 9})
    assert "/cam9" in err.value.reason
    with pytest.raises(PlanError):
        checks({"no_alert": "any", "area": "nowhere"})
