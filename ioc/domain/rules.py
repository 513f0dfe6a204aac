"""Alert rules are data; evaluating them is a pure function of (rule, open alert, value, now).

The engine (``ioc.alerts``) does the I/O: it measures each device's value, calls :func:`evaluate`
and applies the returned transition in one transaction together with its event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal


class RuleError(ValueError):
    """The rules file is wrong; the message says which rule and field."""


class AlertStatus(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"
    FLAPPING = "flapping"


OPEN_STATUSES = frozenset(s for s in AlertStatus if s is not AlertStatus.RESOLVED)
SEVERITIES = ("critical", "major", "minor", "info")


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Fire when ``metric`` stays beyond ``threshold`` for ``for_s``; clear at ``clear``.

    ``clear`` differs from ``threshold`` (hysteresis), so a value hovering at the threshold does
    not open and close alerts in a storm.
    """

    id: str
    metric: str
    op: Literal["below", "above"]
    threshold: float
    clear: float
    for_s: float
    window_s: float
    severity: str
    title: str
    title_en: str
    device_kind: str = "traffic_sensor"

    def breaches(self, value: float) -> bool:
        return value < self.threshold if self.op == "below" else value > self.threshold

    def cleared(self, value: float) -> bool:
        return value >= self.clear if self.op == "below" else value <= self.clear


METRICS = {"average_speed", "intensity", "occupancy"}


def parse_rules(doc: Mapping[str, Any]) -> list[ThresholdRule]:
    items = doc.get("rules") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        raise RuleError("rules file: expected a top-level 'rules' list")
    rules: list[ThresholdRule] = []
    for i, item in enumerate(items):
        where = f"rules[{i}]"
        if not isinstance(item, Mapping):
            raise RuleError(f"{where}: a rule must be a mapping")
        try:
            rule = ThresholdRule(
                id=str(item["id"]),
                metric=str(item["metric"]),
                op=item["op"],
                threshold=float(item["threshold"]),
                clear=float(item["clear"]),
                for_s=float(item.get("for_s", 0)),
                window_s=float(item.get("window_s", 30)),
                severity=str(item.get("severity", "major")),
                title=str(item["title"]),
                title_en=str(item.get("title_en", item["title"])),
                device_kind=str(item.get("device_kind", "traffic_sensor")),
            )
        except KeyError as exc:
            raise RuleError(f"{where}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise RuleError(f"{where}: {exc}") from None
        where = f"rule '{rule.id}'"
        if rule.metric not in METRICS:
            raise RuleError(f"{where}: metric must be one of {sorted(METRICS)}")
        if rule.op not in ("below", "above"):
            raise RuleError(f"{where}: op must be 'below' or 'above'")
        if rule.severity not in SEVERITIES:
            raise RuleError(f"{where}: severity must be one of {SEVERITIES}")
        if rule.for_s < 0 or rule.window_s <= 0:
            raise RuleError(f"{where}: for_s must be >= 0 and window_s > 0")
        if rule.breaches(rule.clear):
            raise RuleError(f"{where}: clear ({rule.clear}) must lie outside the breach zone")
        if any(r.id == rule.id for r in rules):
            raise RuleError(f"{where}: duplicate rule id")
        rules.append(rule)
    return rules


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    status: AlertStatus
    started_at: datetime


class Action(StrEnum):
    OPEN_PENDING = "open_pending"
    OPEN_FIRING = "open_firing"
    FIRE = "fire"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Transition:
    action: Action
    value: float | None


def evaluate(
    rule: ThresholdRule, alert: OpenAlert | None, value: float | None, now: datetime
) -> Transition | None:
    """What should happen to the (rule, device) alert given the device's current value.

    ``value`` is None when the device sent nothing in the window: a threshold rule then keeps
    whatever state it has (silence is the offline rule's business, not this one's).
    """
    if value is None:
        return None
    if alert is None:
        if not rule.breaches(value):
            return None
        action = Action.OPEN_FIRING if rule.for_s <= 0 else Action.OPEN_PENDING
        return Transition(action, value)
    if alert.status is AlertStatus.PENDING:
        if not rule.breaches(value):
            return Transition(Action.RESOLVE, value)  # never fired: withdrawn
        if (now - alert.started_at).total_seconds() >= rule.for_s:
            return Transition(Action.FIRE, value)
        return None
    if alert.status in (AlertStatus.FIRING, AlertStatus.ACKNOWLEDGED) and rule.cleared(value):
        return Transition(Action.RESOLVE, value)
    return None
