"""Reading a scenario file: the schema first, then the references (areas in the geography, rule
ids in the rules file, roads of the demo fleet, step ids); every problem with its line.

A file with any problem is refused as a whole. Names that only the centre's database can
resolve (registered devices, camera numbers) are checked by the runner, before it sends
anything, and reported on their lines through :meth:`Loaded.error`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ioc.domain.fleet import make_fleet
from ioc.domain.geo import Area, Geography
from ioc.domain.rules import Rule, RuleError, parse_rules
from ioc.scenario.errors import (
    InputFileError,
    Problem,
    YamlLocator,
    dotted,
    load_yaml,
    problems_from_validation,
)
from ioc.scenario.schema import (
    AlertExpect,
    NetworkDown,
    NetworkUp,
    NoAlertExpect,
    Scenario,
    _Target,
)

Loc = Sequence[str | int]


def merged_rules(
    base_doc: Mapping[str, Any], changes: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The rules document with ``changes`` applied to the rules they name (by id)."""
    doc = dict(base_doc)
    rules = []
    for raw in doc.get("rules") or []:
        if isinstance(raw, Mapping) and raw.get("id") in changes:
            raw = {**raw, **changes[str(raw["id"])]}
        rules.append(raw)
    doc["rules"] = rules
    return doc


def load_rules_doc(path: Path) -> dict[str, Any]:
    """The parsed rules file (``IOC_RULES_FILE``), for reference checks and changes."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{path}: cannot read the rules file ({exc})") from None
    if not isinstance(doc, dict):
        raise RuleError(f"{path}: expected a mapping with a 'rules' list")
    return doc


def _subtree(geo: Geography, area_id: str) -> list[Area]:
    children: dict[str | None, list[Area]] = {}
    for a in geo.areas:
        children.setdefault(a.parent_id, []).append(a)
    todo = [a for a in geo.areas if a.id == area_id]
    found = []
    while todo:
        a = todo.pop()
        found.append(a)
        todo.extend(children.get(a.id, []))
    return found


def _check_rules(
    sc: Scenario, rules_doc: Mapping[str, Any], out: list[tuple[Loc, str]]
) -> dict[str, Rule]:
    try:
        rules = {r.id: r for r in parse_rules(rules_doc)}
    except RuleError as exc:
        out.append((("centre", "rules"), f"the rules file does not load: {exc}"))
        return {}
    if sc.centre.rules:
        base = {str(r.get("id")) for r in rules_doc.get("rules") or [] if isinstance(r, Mapping)}
        for rid in sc.centre.rules:
            if rid not in base:
                out.append((("centre", "rules", rid), f"no rule {rid!r} in the rules file"))
        try:
            parse_rules(merged_rules(rules_doc, sc.centre.rules))
        except RuleError as exc:
            named = [rid for rid in sc.centre.rules if f"'{rid}'" in str(exc)]
            out.append((("centre", "rules", *named[:1]), str(exc)))
    return rules


def _semantic(
    sc: Scenario, geo: Geography | None, rules_doc: Mapping[str, Any] | None, seed: int
) -> list[tuple[Loc, str]]:
    """Problems the schema cannot see: references to areas, rules, roads and steps."""
    out: list[tuple[Loc, str]] = []
    ids: dict[str, int] = {}
    for i, step in enumerate(sc.timeline):
        if step.id is not None:
            if step.id in ids:
                out.append((("timeline", i, "id"), f"step id {step.id!r} is used twice"))
            ids[step.id] = i
    rules = _check_rules(sc, rules_doc, out) if rules_doc is not None else {}
    areas = geo.by_id() if geo else {}
    roads: dict[str, set[str]] = {}
    if geo is not None:
        for s in make_fleet(geo, sc.centre.sensors, seed):
            roads.setdefault(s.area_id, set()).add(s.road)

    def check_area(loc: Loc, area: str) -> None:
        if geo is not None and area not in areas:
            out.append((loc, f"unknown area {area!r} (areas: {', '.join(sorted(areas))})"))

    for i, step in enumerate(sc.timeline):
        here: tuple[str | int, ...] = ("timeline", i)
        if isinstance(step, _Target) and step.area:
            check_area((*here, "area"), step.area)
            if step.road and geo is not None and step.area in areas:
                known = set().union(*(roads.get(a.id, set()) for a in _subtree(geo, step.area)))
                if step.road not in known:
                    listed = ", ".join(sorted(known)) or "none"
                    out.append(((*here, "road"), f"no road {step.road!r} in {step.area} "
                                f"(roads: {listed})"))  # fmt: skip
        if isinstance(step, NetworkDown | NetworkUp):
            if step.area:
                check_area((*here, "area"), step.area)
            for k, a in enumerate(step.areas or []):
                check_area((*here, "areas", k), a)
    for i, exp in enumerate(sc.expect):
        here = ("expect", i)
        if exp.area:
            check_area((*here, "area"), exp.area)
        for k, a in enumerate(exp.areas or []):
            check_area((*here, "areas", k), a)
        if exp.after is not None and exp.after not in ids:
            out.append(((*here, "after"), f"no step with id {exp.after!r}"))
        key, rule_id = "alert", None
        if isinstance(exp, AlertExpect):
            rule_id = exp.alert
        elif isinstance(exp, NoAlertExpect) and exp.no_alert != "any":
            key, rule_id = "no_alert", exp.no_alert
        if rule_id is not None and rules and rule_id not in rules:
            out.append(((*here, key), f"no rule {rule_id!r} (rules: {', '.join(sorted(rules))})"))
    return out


@dataclass(frozen=True)
class Loaded:
    """A checked scenario and where its parts are in the file (for errors found later, when
    the names in it are resolved against the centre's database)."""

    path: Path
    scenario: Scenario
    locator: YamlLocator

    def error(self, loc: Loc, reason: str) -> InputFileError:
        return InputFileError(self.path, [_place(self.locator, loc, reason)])


def _place(locator: YamlLocator, loc: Loc, reason: str) -> Problem:
    line, col, _ = locator.find(loc)
    return Problem(line, col, dotted(loc), reason)


def load_scenario(
    path: Path,
    *,
    geo: Geography | None = None,
    rules_doc: Mapping[str, Any] | None = None,
    seed: int = 58,
) -> Loaded:
    """Read and check a scenario file. Raises :class:`InputFileError` listing every problem
    with its line. ``geo`` and ``rules_doc`` (the parsed rules file) enable the checks of area
    and rule ids; ``seed`` (``IOC_SIM_SEED``) places the demo fleet whose roads ``road:``
    names."""
    doc, locator = load_yaml(path)
    if not isinstance(doc, Mapping):
        raise InputFileError(path, [Problem(1, 1, "", "a scenario is a YAML mapping")])
    try:
        sc = Scenario.model_validate(doc)
    except ValidationError as exc:
        raise InputFileError(path, problems_from_validation(exc, locator)) from None
    found = _semantic(sc, geo, rules_doc, seed)
    if found:
        raise InputFileError(path, [_place(locator, loc, reason) for loc, reason in found])
    return Loaded(path, sc, locator)
