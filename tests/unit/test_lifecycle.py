from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ioc.domain.lifecycle import MAINTENANCE, Action, Context, OpenAlert, evaluate
from ioc.domain.rules import AlertStatus, Rule

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
RULE = Rule(
    id="c",
    metric="average_speed",
    op="below",
    threshold=15,
    clear=25,
    severity="major",
    title="Ùn tắc",
    title_en="Congestion",
    for_s=60,
    window_s=30,
    escalate_after_s=300,
)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def alert(status: AlertStatus, **kw: object) -> OpenAlert:
    return OpenAlert(1, status, T0, **kw)  # type: ignore[arg-type]


def act(
    rule: Rule, a: OpenAlert | None, value: float | None, s: float, **ctx: object
) -> Action | None:
    t = evaluate(rule, a, value, at(s), Context(**ctx))  # type: ignore[arg-type]
    return None if t is None else t.action


def test_duration_then_fire_then_hysteresis_then_resolve() -> None:
    assert act(RULE, None, 40, 0) is None
    assert act(RULE, None, 10, 0) is Action.OPEN_PENDING
    assert act(RULE, alert(AlertStatus.PENDING), 10, 59) is None
    assert act(RULE, alert(AlertStatus.PENDING), 10, 60) is Action.FIRE
    assert act(RULE, alert(AlertStatus.PENDING), 30, 30) is Action.RESOLVE  # withdrawn
    firing = alert(AlertStatus.FIRING, fired_at=at(60))
    assert act(RULE, firing, 20, 100) is None  # between threshold and clear: stays
    assert act(RULE, firing, 25, 100) is Action.RESOLVE
    assert act(RULE, alert(AlertStatus.ACKNOWLEDGED), 26, 100) is Action.RESOLVE


def test_no_data_keeps_state() -> None:
    assert act(RULE, alert(AlertStatus.PENDING), None, 100) is None
    assert act(RULE, None, None, 0) is None


def test_escalation_once_and_only_when_unacknowledged() -> None:
    firing = alert(AlertStatus.FIRING, fired_at=at(0))
    assert act(RULE, firing, 10, 299) is None
    assert act(RULE, firing, 10, 300) is Action.ESCALATE
    assert act(RULE, firing, None, 300) is Action.ESCALATE  # silence does not stop escalation
    assert act(RULE, replace(firing, escalated=True), 10, 900) is None
    assert act(RULE, alert(AlertStatus.ACKNOWLEDGED, fired_at=at(0)), 10, 900) is None
    assert act(replace(RULE, escalate_after_s=None), firing, 10, 9999) is None


def test_maintenance_suppresses_and_opens_nothing() -> None:
    assert act(RULE, None, 10, 0, in_maintenance=True) is None
    t = evaluate(RULE, alert(AlertStatus.FIRING), 10, at(10), Context(in_maintenance=True))
    assert t is not None and t.action is Action.SUPPRESS and t.suppressed_by == MAINTENANCE
    assert act(RULE, alert(AlertStatus.PENDING), 10, 10, in_maintenance=True) is Action.RESOLVE
    suppressed = alert(AlertStatus.SUPPRESSED, suppressed_by=MAINTENANCE)
    assert act(RULE, suppressed, 10, 10, in_maintenance=True) is None
    # Maintenance over: still bad -> firing again; recovered -> resolved.
    assert act(RULE, suppressed, 10, 10) is Action.UNSUPPRESS
    assert act(RULE, suppressed, 30, 10) is Action.RESOLVE
    assert act(RULE, suppressed, 20, 10) is None


def test_root_cause_groups_children_under_the_parent() -> None:
    child = replace(RULE, suppress_under_parent=True, for_s=0)
    t = evaluate(child, None, 10, T0, Context(parent_alert_id=42))
    assert t is not None and t.action is Action.OPEN_SUPPRESSED and t.suppressed_by == "alert:42"
    t = evaluate(child, alert(AlertStatus.FIRING), 10, T0, Context(parent_alert_id=42))
    assert t is not None and t.action is Action.SUPPRESS and t.suppressed_by == "alert:42"
    # A rule that does not group ignores the parent.
    assert act(replace(RULE, for_s=0), None, 10, 0, parent_alert_id=42) is Action.OPEN_FIRING
    # Parent recovered while the child is still down: the child's own alert fires.
    assert act(child, alert(AlertStatus.SUPPRESSED, suppressed_by="alert:42"), 10, 5) is (
        Action.UNSUPPRESS
    )


def test_flapping_is_one_alert_until_calm_for_the_window() -> None:
    assert act(RULE, None, 10, 0, recent_opens=3) is Action.OPEN_PENDING
    assert act(RULE, None, 10, 0, recent_opens=4) is Action.OPEN_FLAPPING
    flapping = alert(AlertStatus.FLAPPING, last_breach_at=at(100))
    assert act(RULE, flapping, 10, 100.5) is None  # breach time is recent enough
    assert act(RULE, flapping, 10, 102) is Action.STILL_FLAPPING
    assert act(RULE, flapping, 30, 699) is None  # calm, but not for the whole window yet
    assert act(RULE, flapping, 30, 700) is Action.RESOLVE
    assert act(RULE, flapping, 20, 800) is None  # not past the clear level: not calm


@pytest.mark.parametrize("status", [AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED])
def test_open_alerts_resolve_on_clear(status: AlertStatus) -> None:
    assert act(RULE, alert(status), 50, 10) is Action.RESOLVE


SILENT = Rule(
    id="device.silent",
    metric="silence_s",
    op="above",
    threshold=60,
    clear=20,
    severity="minor",
    title="Cảm biến mất tín hiệu",
    title_en="Sensor silent",
    suppress_under_parent=True,
    group_wait_s=10,
    settle_s=30,
)


def test_a_child_waits_for_its_parents_alert_before_firing() -> None:
    """An outage reaches the children first: they stay pending for the grouping wait, and the
    parent's alert, raised meanwhile, groups them; a device without a parent fires at once."""
    assert act(SILENT, None, 90, 0, has_parent=True) is Action.OPEN_PENDING
    assert act(SILENT, None, 90, 0, has_parent=False) is Action.OPEN_FIRING
    pending = alert(AlertStatus.PENDING)
    assert act(SILENT, pending, 95, 9, has_parent=True) is None
    assert act(SILENT, pending, 95, 5, has_parent=True, parent_alert_id=7) is Action.SUPPRESS
    assert act(SILENT, pending, 100, 10, has_parent=True) is Action.FIRE  # no parent alert came
    assert act(SILENT, pending, 10, 4, has_parent=True) is Action.RESOLVE  # a blip: withdrawn
    # for_s longer than the grouping wait still rules
    assert act(replace(SILENT, for_s=30), pending, 95, 20, has_parent=True) is None


def test_after_the_parent_recovers_children_get_time_to_reconnect() -> None:
    """The parent's alert clears while the last children are still reconnecting: they stay
    grouped for settle_s, resolve when they report, and fire only if still silent after it."""
    grouped = alert(AlertStatus.SUPPRESSED, suppressed_by="alert:7")
    ended = at(100)
    ctx = {"has_parent": True, "parent_resolved_at": ended}
    assert act(SILENT, grouped, 120, 101, **ctx) is None  # settling
    assert act(SILENT, grouped, 5, 110, **ctx) is Action.RESOLVE  # reported again
    assert act(SILENT, grouped, 150, 129, **ctx) is None
    assert act(SILENT, grouped, 160, 130, **ctx) is Action.UNSUPPRESS  # still silent: its own
    # a maintenance window is not a parent: no settling after it
    maint = alert(AlertStatus.SUPPRESSED, suppressed_by=MAINTENANCE)
    assert act(SILENT, maint, 120, 101, **ctx) is Action.UNSUPPRESS


def test_grouping_waits_are_per_area_and_never_negative() -> None:
    from ioc.domain.rules import RuleError, parse_rules

    base = {"id": "s", "metric": "silence_s", "op": "above", "threshold": 60, "clear": 20}
    rule = parse_rules(
        {"rules": [base | {"title": "x", "settle_s": 30, "overrides": {"a": {"settle_s": 90}}}]}
    )[0]
    assert rule.largest("settle_s") == 90
    assert rule.for_area(["a"]).settle_s == 90
    with pytest.raises(RuleError, match="group_wait_s"):
        parse_rules({"rules": [base | {"title": "x", "group_wait_s": -1}]})
