"""The alert lifecycle as one pure function of (rule, open alert, measured value, context, now).

pending → firing → acknowledged → resolved, plus:
- **suppressed**: the device is in a maintenance window, or its parent (a site's link or power)
  is down and this alert is grouped under the parent's alert (root cause). Grouping has two
  waits, because an outage reaches the parent's alert and its children's in no fixed order: a
  child's new alert stays pending ``group_wait_s`` (the parent's alert may be a moment behind),
  and after the parent's alert resolves a grouped child stays suppressed ``settle_s`` while it
  reconnects; only a child still bad after that fires on its own;
- **flapping**: the (rule, device) opened ``flap_changes`` alerts within ``flap_window_s``; the
  next one is a single flapping alert that stays open until the signal has been calm for the
  whole window, instead of a storm of open/close pairs;
- **escalated**: firing and not acknowledged within ``escalate_after_s``: one level more severe.

The engine (``ioc.alerts.engine``) applies the returned transition and its event atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ioc.domain.rules import AlertStatus, Rule

MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    status: AlertStatus
    started_at: datetime
    fired_at: datetime | None = None
    escalated: bool = False
    suppressed_by: str | None = None  # "maintenance" or "alert:<id>" of the root cause
    last_breach_at: datetime | None = None
    severity: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    in_maintenance: bool = False
    parent_alert_id: int | None = None  # open root-cause alert of this device's parent
    has_parent: bool = False  # the device depends on a parent (a site's link or power)
    parent_resolved_at: datetime | None = None  # when the parent's last root-cause alert ended
    recent_opens: int = 0  # alerts opened for this (rule, device) within flap_window_s


class Action(StrEnum):
    OPEN_PENDING = "open_pending"
    OPEN_FIRING = "open_firing"
    OPEN_FLAPPING = "open_flapping"
    OPEN_SUPPRESSED = "open_suppressed"
    FIRE = "fire"
    RESOLVE = "resolve"
    SUPPRESS = "suppress"
    UNSUPPRESS = "unsuppress"  # back to firing: the cause is gone (and settled), still bad
    ESCALATE = "escalate"
    STILL_FLAPPING = "still_flapping"  # remember the breach time; no event


@dataclass(frozen=True, slots=True)
class Transition:
    action: Action
    value: float | None
    suppressed_by: str | None = None


def _suppressor(rule: Rule, ctx: Context) -> str | None:
    if ctx.in_maintenance:
        return MAINTENANCE
    if rule.suppress_under_parent and ctx.parent_alert_id is not None:
        return f"alert:{ctx.parent_alert_id}"
    return None


def _wait_s(rule: Rule, ctx: Context) -> float:
    """How long a new alert stays pending before it fires."""
    if rule.suppress_under_parent and ctx.has_parent:
        return max(rule.for_s, rule.group_wait_s)
    return rule.for_s


def _settling(rule: Rule, alert: OpenAlert, ctx: Context, now: datetime) -> bool:
    """Grouped under a parent whose alert ended less than ``settle_s`` ago."""
    return (
        (alert.suppressed_by or "").startswith("alert:")
        and ctx.parent_resolved_at is not None
        and (now - ctx.parent_resolved_at).total_seconds() < rule.settle_s
    )


def evaluate(
    rule: Rule,
    alert: OpenAlert | None,
    value: float | None,
    now: datetime,
    ctx: Context | None = None,
) -> Transition | None:
    """What should happen to the (rule, device) alert now. None: nothing.

    ``value`` None means the metric could not be measured (no data in the window, no baseline
    yet): the alert keeps its state; silence is the silence rule's business.
    """
    ctx = ctx or Context()
    suppressor = _suppressor(rule, ctx)
    if alert is None:
        if value is None or not rule.breaches(value) or ctx.in_maintenance:
            return None  # in maintenance nothing new opens
        if suppressor is not None:
            return Transition(Action.OPEN_SUPPRESSED, value, suppressor)
        if ctx.recent_opens >= rule.flap_changes:
            return Transition(Action.OPEN_FLAPPING, value)
        if _wait_s(rule, ctx) <= 0:
            return Transition(Action.OPEN_FIRING, value)
        return Transition(Action.OPEN_PENDING, value)

    status = alert.status
    if status is AlertStatus.SUPPRESSED:
        if suppressor is not None:
            return None
        if value is not None and rule.cleared(value):
            return Transition(Action.RESOLVE, value)
        if value is not None and rule.breaches(value) and not _settling(rule, alert, ctx, now):
            return Transition(Action.UNSUPPRESS, value)
        return None
    if suppressor is not None:
        if status is AlertStatus.PENDING and ctx.in_maintenance:
            return Transition(Action.RESOLVE, value)  # never fired: withdrawn
        return Transition(Action.SUPPRESS, value, suppressor)
    if value is None:
        return _maybe_escalate(rule, alert, value, now)
    if status is AlertStatus.PENDING:
        if not rule.breaches(value):
            return Transition(Action.RESOLVE, value)  # never fired: withdrawn
        if (now - alert.started_at).total_seconds() >= _wait_s(rule, ctx):
            return Transition(Action.FIRE, value)
        return None
    if status is AlertStatus.FLAPPING:
        if rule.breaches(value):
            last = alert.last_breach_at
            if last is None or (now - last).total_seconds() >= 1.0:
                return Transition(Action.STILL_FLAPPING, value)
            return None
        calm_since = alert.last_breach_at or alert.started_at
        if rule.cleared(value) and (now - calm_since).total_seconds() >= rule.flap_window_s:
            return Transition(Action.RESOLVE, value)
        return None
    if rule.cleared(value):
        return Transition(Action.RESOLVE, value)
    return _maybe_escalate(rule, alert, value, now)


def _maybe_escalate(
    rule: Rule, alert: OpenAlert, value: float | None, now: datetime
) -> Transition | None:
    if (
        alert.status is AlertStatus.FIRING
        and not alert.escalated
        and rule.escalate_after_s is not None
        and (now - (alert.fired_at or alert.started_at)).total_seconds() >= rule.escalate_after_s
    ):
        return Transition(Action.ESCALATE, value)
    return None
