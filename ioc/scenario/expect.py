"""Judging expectations: pure functions of what the database recorded and when.

The runner reads alert events (the append-only ``events`` table, after the watermark taken when
the scenario started), dead letters and the alerts already open at the start; each
:class:`Check` is judged from those rows alone, so the verdicts are reproducible and tested
without a centre.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ioc.domain.rules import Rule
from ioc.scenario import schema as s
from ioc.scenario.plan import PlanError, World

Kind = Literal["alert", "no_alert", "dead_letters"]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    id: int
    time: datetime
    kind: str
    alert_id: int
    rule_id: str
    device_id: str
    area_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class OpenAlert:
    id: int
    rule_id: str
    device_id: str
    area_id: str | None
    status: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    time: datetime
    topic: str | None
    reason: str


@dataclass(frozen=True)
class Check:
    """An expectation with its scope resolved to device ids and area ids."""

    index: int
    kind: Kind
    label: str
    rule: str | None  # None: any rule (no_alert: any)
    statuses: frozenset[str] = frozenset()
    devices: frozenset[str] | None = None  # None: not limited by device
    areas: frozenset[str] | None = None  # None: not limited by area
    need: int = 1
    reasons: tuple[str, ...] = ()
    after: int | None = None  # step index the clock starts at; None: the scenario's start
    within_s: float | None = None
    for_s: float | None = None

    def covers(self, device_id: str | None, area_id: str | None) -> bool:
        if self.devices is None and self.areas is None:
            return True
        return (self.devices is not None and device_id in self.devices) or (
            self.areas is not None and area_id in self.areas
        )


@dataclass
class Verdict:
    index: int
    kind: Kind
    label: str
    passed: bool | None  # None: not decided yet
    measured_s: float | None = None
    limit_s: float | None = None
    detail: str = ""
    devices: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "kind": self.kind,
            "label": self.label,
            "passed": bool(self.passed),
            "measured_s": None if self.measured_s is None else round(self.measured_s, 3),
            "limit_s": self.limit_s,
            "detail": self.detail,
            "devices": self.devices,
        }


# ------------------------------------------------------------------------ resolving ---


def _scope_devices(exp: s._Scope, world: World, i: int) -> set[str]:
    found: set[str] = set()
    for k, dev in enumerate(exp.device_list()):
        if dev not in world.devices:
            where = ("expect", i, "device") if exp.device == dev else ("expect", i, "devices", k)
            raise PlanError(where, f"device {dev!r} is not registered")
        found.add(dev)
    for k, n in enumerate(exp.camera_list()):
        dev_id = world.camera_device(n)
        if dev_id is None:
            where = ("expect", i, "camera") if exp.camera == n else ("expect", i, "cameras", k)
            raise PlanError(where, f"no registered camera serves /cam{n}")
        found.add(dev_id)
    return found


def _where(exp: s._Scope) -> str:
    """``on ts-00001, camera 2 in dong-xoai`` / ``in dong-xoai`` / ``anywhere``."""
    parts = [*exp.device_list(), *(f"camera {n}" for n in exp.camera_list())]
    where = f"on {', '.join(parts)}" if parts else ""
    if exp.area_list():
        where += (" " if where else "") + "in " + ", ".join(exp.area_list())
    return where or "anywhere"


def resolve(
    scenario: s.Scenario, world: World, rules: Mapping[str, Rule] | None = None
) -> list[Check]:
    """Each expectation as a :class:`Check`; raises :class:`PlanError` on what the centre does
    not have (a device, a camera, an area)."""
    steps = scenario.step_ids()
    checks: list[Check] = []
    for i, exp in enumerate(scenario.expect):
        devices = _scope_devices(exp, world, i)
        areas: set[str] = set()
        for k, a in enumerate(exp.area_list()):
            if a not in world.parents:
                where = ("expect", i, "area") if exp.area == a else ("expect", i, "areas", k)
                raise PlanError(where, f"area {a!r} is not in the database")
            areas |= world.subtree(a)
        after = steps[exp.after] if exp.after else None
        since = f" after {exp.after!r}" if exp.after else ""
        dev_set = frozenset(devices) if devices else None
        area_set = frozenset(areas) if areas else None
        if isinstance(exp, s.AlertExpect):
            need, dev_set = _need(exp, world, devices, rules, i)
            many = f"{need} devices " if need > 1 else ""
            label = exp.name or (
                f"{exp.alert} {exp.status} ({many}{_where(exp)}) within {exp.within_s:g} s{since}"
            )
            checks.append(Check(
                i, "alert", label, exp.alert, frozenset({exp.status}), dev_set,
                area_set if dev_set is None else None, need, (), after, exp.within_s,
            ))  # fmt: skip
        elif isinstance(exp, s.NoAlertExpect):
            rule = None if exp.no_alert == "any" else exp.no_alert
            label = exp.name or (
                f"no {rule or 'alert'} ({'/'.join(exp.status)}) {_where(exp)}{since}"
                + (f" for {exp.for_s:g} s" if exp.for_s else "")
            )
            checks.append(Check(
                i, "no_alert", label, rule, frozenset(exp.status), dev_set, area_set,
                after=after, for_s=exp.for_s,
            ))  # fmt: skip
        else:
            assert isinstance(exp, s.DeadLettersExpect)
            label = exp.name or (
                f"dead letters {', '.join(exp.dead_letters)} {_where(exp)}"
                f" within {exp.within_s:g} s{since}"
            )
            checks.append(Check(
                i, "dead_letters", label, None, frozenset(), dev_set, None,
                reasons=tuple(exp.dead_letters), after=after, within_s=exp.within_s,
            ))  # fmt: skip
    return checks


def _need(
    exp: s.AlertExpect,
    world: World,
    devices: set[str],
    rules: Mapping[str, Rule] | None,
    i: int,
) -> tuple[int, frozenset[str] | None]:
    """How many distinct devices must get the alert, and which ones are eligible."""
    if exp.count == "all" and not devices:
        rule = (rules or {}).get(exp.alert)
        if rule is None:
            raise PlanError(("expect", i, "count"), f"count: all needs rule {exp.alert!r}")
        eligible = set(world.in_areas(exp.area_list(), rule.device_kind)) if exp.area_list() else {
            d.id for d in world.devices.values() if d.kind == rule.device_kind
        }  # fmt: skip
        if not eligible:
            raise PlanError(("expect", i, "area"), f"no {rule.device_kind} devices there")
        return len(eligible), frozenset(eligible)
    if devices:
        need = len(devices) if exp.count in (None, "all") else int(exp.count)
        return min(need, len(devices)), frozenset(devices)
    return (1 if exp.count is None else int(exp.count)), None


# -------------------------------------------------------------------------- judging ---


def _start(check: Check, t0: datetime, step_times: Mapping[int, datetime]) -> datetime | None:
    return t0 if check.after is None else step_times.get(check.after)


def _device_of_topic(topic: str | None) -> str | None:
    parts = (topic or "").split("/")
    return parts[3] if len(parts) >= 4 and parts[:3] == ["ioc", "v1", "traffic"] else None


def judge(
    check: Check,
    *,
    t0: datetime,
    now: datetime,
    finished: bool,
    step_times: Mapping[int, datetime],
    events: Sequence[AlertEvent] = (),
    dead_letters: Sequence[DeadLetter] = (),
    open_at_start: Iterable[OpenAlert] = (),
) -> Verdict:
    """The verdict on ``check`` at ``now``; ``finished``: the scenario is over."""
    v = Verdict(check.index, check.kind, check.label, None, limit_s=check.within_s or check.for_s)
    start = _start(check, t0, step_times)
    if start is None:  # its step has not run yet
        if finished:
            v.passed, v.detail = False, "the step it waits for never ran"
        return v
    if check.kind == "alert":
        return _judge_alert(check, v, start, now, events, open_at_start)
    if check.kind == "no_alert":
        return _judge_no_alert(check, v, start, now, finished, events, open_at_start)
    return _judge_dead_letters(check, v, start, now, dead_letters)


def _judge_alert(
    check: Check,
    v: Verdict,
    start: datetime,
    now: datetime,
    events: Sequence[AlertEvent],
    open_at_start: Iterable[OpenAlert],
) -> Verdict:
    first: dict[str, datetime] = {}
    for e in events:
        if (
            e.rule_id == check.rule
            and e.status in check.statuses
            and e.time >= start
            and check.covers(e.device_id, e.area_id)
        ):
            first.setdefault(e.device_id, e.time)
    ordered = sorted(first.items(), key=lambda kv: kv[1])
    v.devices = [d for d, _ in ordered]
    assert check.within_s is not None
    if len(ordered) >= check.need:
        v.measured_s = (ordered[check.need - 1][1] - start).total_seconds()
        v.passed = v.measured_s <= check.within_s
        v.detail = f"{len(ordered)} device(s): {', '.join(v.devices[:8])}"
        if not v.passed:
            v.detail = f"too late: {v.measured_s:.1f} s > {check.within_s:g} s; " + v.detail
        return v
    if (now - start).total_seconds() > check.within_s:
        v.passed = False
        got = f"{len(ordered)} of {check.need} device(s)" + (
            f" ({', '.join(v.devices[:8])})" if ordered else ""
        )
        stale = [
            o for o in open_at_start
            if o.rule_id == check.rule and check.covers(o.device_id, o.area_id)
        ]  # fmt: skip
        note = ""
        if stale:
            o = stale[0]
            note = (
                f"; alert #{o.id} on {o.device_id} was already {o.status} before the scenario"
                " started (one open alert per rule and device: resolve it first)"
            )
        v.detail = f"not seen within {check.within_s:g} s: {got}{note}"
    return v


def _judge_no_alert(
    check: Check,
    v: Verdict,
    start: datetime,
    now: datetime,
    finished: bool,
    events: Sequence[AlertEvent],
    open_at_start: Iterable[OpenAlert],
) -> Verdict:
    end = None if check.for_s is None else start.timestamp() + check.for_s
    bad: list[str] = []
    if check.after is None:
        for o in open_at_start:
            if (check.rule in (None, o.rule_id) and o.status in check.statuses
                    and check.covers(o.device_id, o.area_id)):  # fmt: skip
                bad.append(f"{o.rule_id} #{o.id} on {o.device_id} already {o.status} at the start")
                v.measured_s = 0.0
    for e in events:
        if (
            check.rule in (None, e.rule_id)
            and e.status in check.statuses
            and e.time >= start
            and (end is None or e.time.timestamp() <= end)
            and check.covers(e.device_id, e.area_id)
        ):
            if v.measured_s is None:
                v.measured_s = (e.time - start).total_seconds()
            bad.append(f"{e.rule_id} #{e.alert_id} {e.status} on {e.device_id}")
    if bad:
        v.passed = False
        v.devices = sorted({b.split(" on ")[1].split()[0] for b in bad})
        v.detail = f"{len(bad)} unwanted: " + "; ".join(bad[:6]) + ("; ..." if len(bad) > 6 else "")
    elif finished or (end is not None and now.timestamp() > end):
        v.passed = True
        v.detail = "none"
    return v


def _judge_dead_letters(
    check: Check, v: Verdict, start: datetime, now: datetime, letters: Sequence[DeadLetter]
) -> Verdict:
    first: dict[str, datetime] = {}
    for d in letters:
        if d.time >= start and d.reason in check.reasons:
            device = _device_of_topic(d.topic)
            if check.devices is None or device in check.devices:
                first.setdefault(d.reason, d.time)
    missing = [r for r in check.reasons if r not in first]
    assert check.within_s is not None
    if not missing:
        v.measured_s = max((t - start).total_seconds() for t in first.values())
        v.passed = v.measured_s <= check.within_s
        v.detail = ", ".join(
            f"{r} at +{(first[r] - start).total_seconds():.1f} s" for r in check.reasons
        )
    elif (now - start).total_seconds() > check.within_s:
        v.passed = False
        v.detail = f"missing {', '.join(missing)}" + (
            f"; seen {', '.join(sorted(first))}" if first else ""
        )
    return v
