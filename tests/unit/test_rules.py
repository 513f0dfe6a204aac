from dataclasses import replace

import pytest

from ioc.domain.rules import Rule, RuleError, escalated_severity, parse_rules

GOOD = {
    "id": "c",
    "metric": "average_speed",
    "op": "below",
    "threshold": 15,
    "clear": 25,
    "title": "x",
}


def test_parse_rules_with_defaults() -> None:
    (rule,) = parse_rules({"defaults": {"escalate_after_s": 600}, "rules": [GOOD]})
    assert rule.threshold == 15 and rule.severity == "major" and rule.title_en == "x"
    assert rule.escalate_after_s == 600 and rule.device_kind == "traffic_sensor"


def test_per_area_overrides_deeper_wins() -> None:
    (rule,) = parse_rules(
        {
            "rules": [
                {
                    **GOOD,
                    "overrides": {
                        "VN-58": {"threshold": 12, "clear": 20},
                        "dong-xoai": {"threshold": 10},
                    },
                }
            ]
        }
    )
    assert rule.for_area(["VN-58", "binh-long"]).threshold == 12
    inner = rule.for_area(["VN-58", "dong-xoai"])
    assert (inner.threshold, inner.clear) == (10, 20)
    assert rule.for_area(["other"]).threshold == 15


def test_breach_and_clear() -> None:
    rule = Rule(
        id="o",
        metric="occupancy",
        op="above",
        threshold=0.8,
        clear=0.6,
        severity="minor",
        title="t",
        title_en="t",
    )
    assert rule.breaches(0.9) and not rule.breaches(0.8)
    assert rule.cleared(0.6) and not rule.cleared(0.7)
    assert replace(rule, op="below", threshold=0.2, clear=0.3).breaches(0.1)


def test_escalated_severity() -> None:
    assert [escalated_severity(s) for s in ("info", "minor", "major", "critical")] == [
        "minor",
        "major",
        "critical",
        "critical",
    ]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "top-level 'rules'"),
        ({"rules": [{**GOOD, "metric": "colour"}]}, "metric must be"),
        ({"rules": [{**GOOD, "op": "near"}]}, "op must be"),
        ({"rules": [{**GOOD, "clear": 10}]}, "clear"),
        ({"rules": [{**GOOD, "severity": "huge"}]}, "severity"),
        ({"rules": [{k: v for k, v in GOOD.items() if k != "threshold"}]}, "threshold"),
        ({"rules": [GOOD, GOOD]}, "duplicate"),
        ({"rules": [{**GOOD, "threshold": "fast"}]}, "must be a number"),
        ({"rules": [{**GOOD, "colour": "red"}]}, "unknown field"),
        ({"rules": [{**GOOD, "device_kind": "drone"}]}, "device_kind"),
        ({"rules": [{**GOOD, "overrides": {"x": {"metric": "occupancy"}}}]}, "may only set"),
        ({"rules": [{**GOOD, "overrides": {"x": {"clear": 5}}}]}, "override for x"),
    ],
)
def test_parse_rules_errors_name_the_problem(doc: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(doc)
