"""Alert rules are data: one file per deployment, with per-area overrides.

Every rule is a threshold on a metric the engine measures per device ("mean speed over the
window", "seconds since the last reading", "share of a site's devices that are down", "speed as a
share of this sensor's own baseline for this hour of the week", ...), with a duration and a
separate clear level (hysteresis). What to do about it is ``ioc.domain.lifecycle``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
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
SEVERITIES = ("critical", "major", "minor", "info")  # most severe first

# What the engine can measure per device (``ioc.alerts.measure``).
METRICS: dict[str, str] = {
    "average_speed": "mean speed over the window, km/h",
    "occupancy": "mean occupancy over the window, 0-1",
    "intensity": "mean vehicles per reading over the window",
    "intensity_sum": "vehicles counted over the window (None unless the window before had traffic)",
    "speed_vs_baseline": "mean speed over the window / this sensor's usual speed at this hour "
    "of the week (None without enough history)",
    "silence_s": "seconds since the last reading; infinite after an 'offline' Last Will",
    "camera_problem": "1 while the camera's health is not ok, else 0",
    "children_down_ratio": "share of the devices that depend on this one which are down",
}
DEVICE_KINDS = ("traffic_sensor", "camera", "site")
_OVERRIDABLE = frozenset(
    {
        "threshold",
        "clear",
        "for_s",
        "window_s",
        "severity",
        "escalate_after_s",
        "enabled",
        "group_wait_s",
        "settle_s",
    }
)


def escalated_severity(severity: str) -> str:
    i = SEVERITIES.index(severity)
    return SEVERITIES[max(i - 1, 0)]


@dataclass(frozen=True, slots=True)
class Rule:
    """Fire when ``metric`` stays beyond ``threshold`` for ``for_s``; clear past ``clear``."""

    id: str
    metric: str
    op: Literal["below", "above"]
    threshold: float
    clear: float
    severity: str
    title: str
    title_en: str
    device_kind: str = "traffic_sensor"
    for_s: float = 0.0
    window_s: float = 60.0
    escalate_after_s: float | None = None  # firing and not acknowledged this long: escalate
    flap_changes: int = 4  # this many openings within flap_window_s make one flapping alert
    flap_window_s: float = 600.0
    suppress_under_parent: bool = False  # root cause: group under the parent's open alert
    # With suppress_under_parent, for a device that has a parent: a new alert waits at least
    # this long (pending) so that the parent's root-cause alert, raised from the same outage a
    # moment later, can still group it instead of it firing on its own.
    group_wait_s: float = 0.0
    # After the parent's root-cause alert resolves, a grouped alert stays suppressed this long
    # while the device reconnects; still bad after that, it fires.
    settle_s: float = 0.0
    root_cause: bool = False  # this rule's alerts are what children are grouped under
    enabled: bool = True
    overrides: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = field(default=())

    def breaches(self, value: float) -> bool:
        return value < self.threshold if self.op == "below" else value > self.threshold

    def cleared(self, value: float) -> bool:
        return value >= self.clear if self.op == "below" else value <= self.clear

    def largest(self, name: str) -> float:
        """The largest value of a number field here or in any area's override."""
        values = [dict(changes).get(name) for _, changes in self.overrides]
        return max([float(getattr(self, name))] + [float(v) for v in values if v is not None])

    def for_area(self, lineage: Sequence[str]) -> Rule:
        """The rule as it applies in an area: ``lineage`` runs from the root to the area, and
        deeper overrides win."""
        by_area = dict(self.overrides)
        rule = self
        for area in lineage:
            if area in by_area:
                rule = replace(rule, **dict(by_area[area]))
        return rule


def _number(item: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = item.get(key, default)
    if value is None:
        raise RuleError(f"{where}: missing field '{key}'")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{where}: '{key}' must be a number, not {value!r}")
    return float(value)


def _check(rule: Rule, where: str) -> None:
    if rule.op not in ("below", "above"):
        raise RuleError(f"{where}: op must be 'below' or 'above'")
    if rule.severity not in SEVERITIES:
        raise RuleError(f"{where}: severity must be one of {SEVERITIES}")
    if rule.for_s < 0 or rule.window_s <= 0:
        raise RuleError(f"{where}: for_s must be >= 0 and window_s > 0")
    if rule.breaches(rule.clear):
        raise RuleError(f"{where}: clear ({rule.clear}) must lie outside the breach zone")
    if rule.escalate_after_s is not None and rule.escalate_after_s <= 0:
        raise RuleError(f"{where}: escalate_after_s must be > 0")
    if rule.group_wait_s < 0 or rule.settle_s < 0:
        raise RuleError(f"{where}: group_wait_s and settle_s must be >= 0")


def parse_rules(doc: Mapping[str, Any]) -> list[Rule]:
    items = doc.get("rules") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        raise RuleError("expected a top-level 'rules' list")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise RuleError("'defaults' must be a mapping")
    known = {f.name for f in fields(Rule)}
    rules: list[Rule] = []
    for i, raw in enumerate(items):
        where = f"rules[{i}]"
        if not isinstance(raw, Mapping):
            raise RuleError(f"{where}: a rule must be a mapping")
        item = {**defaults, **raw}
        if "id" in item:
            where = f"rule '{item['id']}'"
        unknown = set(item) - known
        if unknown:
            raise RuleError(f"{where}: unknown field(s) {sorted(unknown)}")
        for key in ("id", "metric", "op", "title"):
            if key not in item:
                raise RuleError(f"{where}: missing field '{key}'")
        if item["metric"] not in METRICS:
            raise RuleError(f"{where}: metric must be one of {sorted(METRICS)}")
        if item.get("device_kind", "traffic_sensor") not in DEVICE_KINDS:
            raise RuleError(f"{where}: device_kind must be one of {DEVICE_KINDS}")
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise RuleError(f"{where}: overrides must map area ids to fields")
        parsed_overrides = []
        for area, changes in overrides.items():
            if not isinstance(changes, Mapping) or set(changes) - _OVERRIDABLE:
                raise RuleError(f"{where}: overrides.{area} may only set {sorted(_OVERRIDABLE)}")
            parsed_overrides.append((str(area), tuple(sorted(changes.items()))))
        escalate = item.get("escalate_after_s")
        rule = Rule(
            id=str(item["id"]),
            metric=str(item["metric"]),
            op=item["op"],
            threshold=_number(item, "threshold", where),
            clear=_number(item, "clear", where),
            severity=str(item.get("severity", "major")),
            title=str(item["title"]),
            title_en=str(item.get("title_en", item["title"])),
            device_kind=str(item.get("device_kind", "traffic_sensor")),
            for_s=_number(item, "for_s", where, 0.0),
            window_s=_number(item, "window_s", where, 60.0),
            escalate_after_s=None if escalate is None else _number(item, "escalate_after_s", where),
            flap_changes=int(_number(item, "flap_changes", where, 4)),
            flap_window_s=_number(item, "flap_window_s", where, 600.0),
            suppress_under_parent=bool(item.get("suppress_under_parent", False)),
            group_wait_s=_number(item, "group_wait_s", where, 0.0),
            settle_s=_number(item, "settle_s", where, 0.0),
            root_cause=bool(item.get("root_cause", False)),
            enabled=bool(item.get("enabled", True)),
            overrides=tuple(parsed_overrides),
        )
        _check(rule, where)
        for area, changes in rule.overrides:
            _check(replace(rule, **dict(changes)), f"{where} (override for {area})")
        if any(r.id == rule.id for r in rules):
            raise RuleError(f"{where}: duplicate rule id")
        rules.append(rule)
    return rules
