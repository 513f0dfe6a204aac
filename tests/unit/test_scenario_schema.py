"""Scenario files: the shipped ones load; a malformed one is refused with file, line, reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc.config import PROJECT_ROOT
from ioc.db.seed import load_geography
from ioc.scenario.errors import InputFileError
from ioc.scenario.load import load_rules_doc, load_scenario
from ioc.scenario.schema import AlertExpect, Congestion, NoAlertExpect

SCENARIOS = sorted((PROJECT_ROOT / "scenarios").glob("*.yaml"))
GEO = load_geography(PROJECT_ROOT / "config" / "areas" / "binh-phuoc.yaml")
RULES = load_rules_doc(PROJECT_ROOT / "config" / "rules.yaml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def refuse(path: Path) -> list[str]:
    with pytest.raises(InputFileError) as err:
        load_scenario(path, geo=GEO, rules_doc=RULES)
    return [p.render(path) for p in err.value.problems]


GOOD = """\
version: 1
name: t
title: test
timeline:
  - at: 0
    id: jam
    do: congestion
    area: dong-xoai
    speed_kmh: 8
expect:
  - alert: traffic.congestion
    area: dong-xoai
    within_s: 30
    after: jam
"""


def test_the_six_demo_scenarios_are_shipped_and_valid() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {
        "rush-hour-dong-xoai",
        "network-outage-phuoc-long",
        "camera-covered-night",
        "flapping-sensor",
        "storm-north-east",
        "garbage-sensor",
    } <= names
    for path in SCENARIOS:
        sc = load_scenario(path, geo=GEO, rules_doc=RULES).scenario
        assert sc.name == path.stem
        assert sc.expect and sc.timeline


def test_a_good_file_loads(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD), geo=GEO, rules_doc=RULES).scenario
    assert isinstance(sc.timeline[0], Congestion)
    assert sc.timeline[0].speed_kmh == 8
    assert isinstance(sc.expect[0], AlertExpect)
    assert sc.step_ids() == {"jam": 0}


def test_a_value_out_of_range_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("speed_kmh: 8", "speed_kmh: 500"))
    (line,) = refuse(path)
    assert line.startswith(f"{path}:9:16: timeline[0].speed_kmh: ")
    assert "less than or equal to 300" in line


def test_an_unknown_field_is_a_typo(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    within_s: 30", "    withn_s: 30"))
    lines = refuse(path)
    assert f"{path}:13:" in lines[0] or f"{path}:13:" in lines[1]
    assert any("expect[0].withn_s: unknown field" in x for x in lines)
    assert any("expect[0].within_s: Field required" in x for x in lines)


def test_an_unknown_action_and_expectation(tmp_path: Path) -> None:
    text = GOOD.replace("do: congestion", "do: earthquake").replace(
        "  - alert: traffic.congestion", "  - maybe: traffic.congestion"
    )
    path = write(tmp_path, text)
    lines = refuse(path)
    assert any(x.startswith(f"{path}:5:5: timeline[0]") and "earthquake" in x for x in lines)
    assert any(x.startswith(f"{path}:11:5: expect[0]") and "alert:" in x for x in lines)


def test_references_are_checked_against_the_deployment(tmp_path: Path) -> None:
    text = (
        GOOD.replace("area: dong-xoai\n    speed", "area: atlantis\n    speed")
        .replace("after: jam", "after: jim")
        .replace("alert: traffic.congestion", "alert: traffic.teleport")
    )
    path = write(tmp_path, text)
    lines = refuse(path)
    assert any(
        x.startswith(f"{path}:8:11: timeline[0].area: unknown area 'atlantis'") for x in lines
    )
    assert any(x.startswith(f"{path}:14:12: expect[0].after: no step with id 'jim'") for x in lines)
    assert any(
        x.startswith(f"{path}:11:12: expect[0].alert: no rule 'traffic.teleport'") for x in lines
    )


def test_a_road_must_run_through_the_area(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    speed_kmh: 8", "    road: QL99\n    speed_kmh: 8"))
    (line,) = refuse(path)
    assert line.startswith(f"{path}:9:11: timeline[0].road: no road 'QL99' in dong-xoai")
    assert "ĐT741" in line  # the roads that do


def test_rule_changes_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace(
        "timeline:", "centre:\n  rules:\n    device.silent: {threshold: 10, clear: 20}\ntimeline:"
    )
    path = write(tmp_path, text)
    (line,) = refuse(path)
    assert line.startswith(f"{path}:6:20: centre.rules.device.silent: ")
    assert "clear" in line
    path = write(tmp_path, text.replace("device.silent", "device.nope"))
    assert refuse(path)[0].startswith(f"{path}:6:18: centre.rules.device.nope: no rule")


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    speed_kmh: 8", "    speed_kmh: [8"))
    (line,) = refuse(path)
    assert line.startswith(f"{path}:10:") and "not valid YAML" in line


def test_yaml_booleans_as_keys_get_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    speed_kmh: 8", "    on: true"))
    lines = refuse(path)
    assert any(x.startswith(f"{path}:5:5:") and "quote" in x for x in lines)


def test_missing_file_and_not_a_mapping(tmp_path: Path) -> None:
    assert refuse(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}:0: no such file"]
    path = write(tmp_path, "- just\n- a list\n")
    assert refuse(path) == [f"{path}:1:1: a scenario is a YAML mapping"]


def test_no_alert_defaults_and_any(tmp_path: Path) -> None:
    text = GOOD.replace("expect:\n", "expect:\n  - no_alert: any\n    areas: [bu-dop, bu-dang]\n")
    sc = load_scenario(write(tmp_path, text), geo=GEO, rules_doc=RULES).scenario
    first = sc.expect[0]
    assert isinstance(first, NoAlertExpect)
    assert first.status == ["firing", "flapping"]
    assert first.area_list() == ["bu-dop", "bu-dang"]


def test_step_ids_are_unique_and_repeats_need_a_period(tmp_path: Path) -> None:
    text = GOOD.replace(
        "expect:",
        "  - at: 3\n    id: jam\n    do: clear_congestion\n    repeat: 3\nexpect:",
    )
    path = write(tmp_path, text)
    lines = refuse(path)
    assert any("timeline[1]" in x and "every_s" in x for x in lines)
