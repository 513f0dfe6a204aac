from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ioc.domain.rules import (
    Action,
    AlertStatus,
    OpenAlert,
    RuleError,
    ThresholdRule,
    evaluate,
    parse_rules,
)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
RULE = ThresholdRule(
    id="traffic.congestion",
    metric="average_speed",
    op="below",
    threshold=15,
    clear=25,
    for_s=60,
    window_s=30,
    severity="major",
    title="Ùn tắc",
    title_en="Congestion",
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_no_breach_no_alert() -> None:
    assert evaluate(RULE, None, 40.0, T0) is None
    assert evaluate(RULE, None, None, T0) is None


def test_breach_opens_pending_then_fires_after_duration() -> None:
    step = evaluate(RULE, None, 10.0, T0)
    assert step is not None and step.action is Action.OPEN_PENDING
    pending = OpenAlert(1, AlertStatus.PENDING, T0)
    assert evaluate(RULE, pending, 10.0, at(59)) is None
    fired = evaluate(RULE, pending, 10.0, at(60))
    assert fired is not None and fired.action is Action.FIRE and fired.value == 10.0


def test_pending_withdrawn_when_breach_ends_early() -> None:
    pending = OpenAlert(1, AlertStatus.PENDING, T0)
    step = evaluate(RULE, pending, 30.0, at(10))
    assert step is not None and step.action is Action.RESOLVE


def test_zero_duration_fires_at_once() -> None:
    step = evaluate(replace(RULE, for_s=0), None, 1.0, T0)
    assert step is not None and step.action is Action.OPEN_FIRING


@pytest.mark.parametrize("status", [AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED])
def test_hysteresis_clear_needs_the_clear_level(status: AlertStatus) -> None:
    firing = OpenAlert(1, status, T0)
    assert evaluate(RULE, firing, 20.0, at(100)) is None  # above threshold, below clear
    step = evaluate(RULE, firing, 25.0, at(100))
    assert step is not None and step.action is Action.RESOLVE


def test_silence_keeps_state() -> None:
    assert evaluate(RULE, OpenAlert(1, AlertStatus.FIRING, T0), None, at(100)) is None


def test_above_rule() -> None:
    rule = replace(RULE, op="above", metric="occupancy", threshold=0.8, clear=0.6, for_s=0)
    assert evaluate(rule, None, 0.9, T0) is not None
    assert evaluate(rule, None, 0.7, T0) is None
    step = evaluate(rule, OpenAlert(1, AlertStatus.FIRING, T0), 0.6, T0)
    assert step is not None and step.action is Action.RESOLVE


GOOD = {
    "id": "c",
    "metric": "average_speed",
    "op": "below",
    "threshold": 15,
    "clear": 25,
    "title": "x",
}


def test_parse_rules_ok() -> None:
    (rule,) = parse_rules({"rules": [GOOD]})
    assert rule.threshold == 15 and rule.severity == "major" and rule.title_en == "x"


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
        ({"rules": [{**GOOD, "threshold": "fast"}]}, "rules[0]"),
    ],
)
def test_parse_rules_errors_name_the_problem(doc: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_rules(doc)
