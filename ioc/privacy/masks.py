"""Reading the privacy-masks file (``IOC_PRIVACY_MASKS_FILE``, default
``config/privacy-masks.yaml``) into :class:`ioc.domain.privacy.PrivacyMasks`.

A bad file stops the camera worker at start with one line per problem,
``path:line:column: where: reason``: a camera running without the mask someone meant it to
have would store exactly the pictures the mask was there to prevent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ioc.domain.privacy import PrivacyMasks
from ioc.privacy import PrivacyError

EXAMPLE = "cam-0001:\n  - [[0.0, 0.0], [0.4, 0.0], [0.4, 0.5], [0.0, 0.5]]"


class MaskFileError(PrivacyError):
    """The privacy-masks file cannot be used; the message names the file, line and reason."""


def load_masks(path: Path | None) -> PrivacyMasks:
    """The masks in ``path`` (None: no masks). Raises :class:`MaskFileError`."""
    if path is None:
        return PrivacyMasks()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MaskFileError(
            f"{path}: no such file (IOC_PRIVACY_MASKS_FILE names the privacy-masks file)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MaskFileError(f"{path}: cannot be read ({exc})") from None
    return parse_masks(text, str(path))


def parse_masks(text: str, where: str = "<masks>") -> PrivacyMasks:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = f"{mark.line + 1}:{mark.column + 1}" if mark else "1"
        reason = " ".join(str(x) for x in (exc.context, exc.problem) if x) or "not valid YAML"
        raise MaskFileError(f"{where}:{pos}: not valid YAML: {reason}") from None
    except yaml.YAMLError as exc:
        raise MaskFileError(f"{where}:1: not valid YAML: {exc}") from None
    if doc is None:
        return PrivacyMasks()  # only comments: no masks
    if not isinstance(doc, dict):
        raise MaskFileError(
            f"{where}:1: expected a mapping of camera id -> list of polygons, e.g.\n{EXAMPLE}"
        )
    try:
        return PrivacyMasks.model_validate(doc)
    except ValidationError as exc:
        lines = [_problem(err, node, where) for err in exc.errors(include_url=False)[:20]]
        raise MaskFileError("\n".join(lines)) from None


def _problem(err: Any, root: yaml.Node | None, where: str) -> str:
    loc = [p for p in err["loc"] if isinstance(p, str | int) and p != "[key]"]
    if "[key]" in err["loc"]:  # a camera id: point at the key itself
        line, col = _key_mark(root, loc[0] if loc else "")
        reason = (
            f"the camera id {loc[0] if loc else ''!r} must be text (quote it)"
            if err["type"] == "string_type"
            else str(err["msg"]).removeprefix("Value error, ")
        )
        return f"{where}:{line}:{col}: {reason}"
    line, col, found = _find(root, loc)
    path = _dotted(found)
    if err["type"] in ("float_type", "tuple_type") and len(loc) == 4:
        reason = "a coordinate must be a number from 0 to 1"
    elif err["type"] in ("tuple_type", "too_long", "too_short") and len(loc) == 3:
        reason = "a point is a pair [x, y]"
    elif err["type"] in ("greater_than_equal", "less_than_equal"):
        reason = f"{err['input']} is outside the frame: coordinates run from 0 to 1"
    elif err["type"] == "tuple_type" and len(loc) <= 2:
        reason = "expected a list" + (" of polygons" if len(loc) == 1 else " of points [x, y]")
    else:
        reason = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}:{line}:{col}: {path}: {reason}" if path else f"{where}:{line}:{col}: {reason}"


def _find(root: yaml.Node | None, loc: Sequence[str | int]) -> tuple[int, int, list[str | int]]:
    """(line, column, the part of ``loc`` found) of the deepest node of ``loc`` in the file."""
    if root is None:
        return 1, 1, []
    node, found = root, []
    for part in loc:
        nxt = None
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if 0 <= part < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if str(k.value) == str(part)), None)
        if nxt is None:
            break
        node = nxt
        found.append(part)
    return node.start_mark.line + 1, node.start_mark.column + 1, found


def _key_mark(root: yaml.Node | None, key: str | int) -> tuple[int, int]:
    if isinstance(root, yaml.MappingNode):
        for k, _ in root.value:
            if str(k.value) == str(key):
                return k.start_mark.line + 1, k.start_mark.column + 1
    return 1, 1


def _dotted(loc: Sequence[str | int]) -> str:
    """``["cam-1", 0, 2]`` -> ``cam-1[0][2]``."""
    return "".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)
