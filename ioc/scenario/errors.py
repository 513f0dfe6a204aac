"""Errors that point into a file: ``path:line:column: where: reason``.

A scenario or recording that is wrong is refused as a whole, before anything is published, with
one line per problem. YAML locations come from the composed node tree (``yaml.compose``), so a
pydantic error's location (``timeline.2.speed_kmh``) maps back to the line that holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    line: int  # 1-based; 0 when the whole file is wrong (unreadable, empty)
    column: int  # 1-based; 0 when unknown
    where: str  # e.g. "timeline[2].speed_kmh"; empty for the whole file
    reason: str

    def render(self, path: Path | str) -> str:
        pos = f"{path}:{self.line}" + (f":{self.column}" if self.column else "")
        return f"{pos}: {self.where}: {self.reason}" if self.where else f"{pos}: {self.reason}"


class InputFileError(ValueError):
    """A scenario or recording file is malformed; nothing was published."""

    def __init__(self, path: Path | str, problems: Sequence[Problem]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        super().__init__("\n".join(p.render(path) for p in self.problems))


def dotted(loc: Iterable[str | int]) -> str:
    """``("timeline", 2, "speed_kmh")`` -> ``timeline[2].speed_kmh``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class YamlLocator:
    """Finds the line of a value in a YAML document from a path of keys and indexes."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def find(self, loc: Sequence[str | int]) -> tuple[int, int, list[str | int]]:
        """(line, column, the part of ``loc`` that exists in the file) of the deepest node on
        the path. Parts the file does not have (a missing field, or a tag pydantic adds to a
        union's location) are skipped, so the line is the closest one that holds the problem."""
        node = self.root
        if node is None:
            return 1, 1, []
        best = node
        found: list[str | int] = []
        for part in loc:
            nxt = _child(node, part)
            if nxt is None:
                continue
            node = best = nxt
            found.append(part)
        return best.start_mark.line + 1, best.start_mark.column + 1, found


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if 0 <= part < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value  # type: ignore[no-any-return]
    return None


def load_yaml(path: Path) -> tuple[Any, YamlLocator]:
    """The parsed document and a locator for its nodes; YAML syntax errors become a
    :class:`InputFileError` with the line the parser stopped at."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, [Problem(0, 0, "", "no such file")]) from None
    except UnicodeDecodeError as exc:
        raise InputFileError(path, [Problem(0, 0, "", f"not UTF-8 text ({exc.reason})")]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        reason = " ".join(str(x) for x in (exc.context, exc.problem) if x) or "not valid YAML"
        raise InputFileError(path, [Problem(line, col, "", f"not valid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise InputFileError(path, [Problem(0, 0, "", f"not valid YAML: {exc}")]) from None
    return doc, YamlLocator(node)


def message(err: Any) -> str:
    """A pydantic error's message as a person reads it."""
    if err["type"] == "extra_forbidden":
        return "unknown field (a typo?)"
    if err["type"] == "invalid_key":
        return (
            f"key {err['input']!r} is not a string (YAML reads on/off/yes/no as booleans: quote it)"
        )
    return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def problems_from_validation(
    exc: ValidationError, locator: YamlLocator, *, limit: int = 20
) -> list[Problem]:
    """One :class:`Problem` per pydantic error, placed on its line."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False)[:limit]:
        raw = list(err["loc"])[: -1 if err["type"] == "invalid_key" else None]  # the key itself
        loc = [p for p in raw if isinstance(p, str | int) and not isinstance(p, bool)]
        line, col, found = locator.find(loc)
        missing = err["type"] == "missing"
        # Name the path as the user wrote it: the parts that exist, plus the missing key.
        shown = (
            [*found, loc[-1]] if missing and loc and (not found or loc[-1] != found[-1]) else found
        )
        out.append(Problem(line, col, dotted(shown), message(err)))
    return out
