"""Sensor faults and what they do to the bytes on the wire. Pure: no clock, no I/O.

| kind                | on the wire                                                                |
|---------------------|----------------------------------------------------------------------------|
| `silent`            | nothing: no observation, `seq` does not advance; the connection stays up   |
| `stuck`             | intensity, speed and occupancy frozen at the fault's first reading         |
| `out_of_range`      | one value out of its range: occupancy 1.7, speed -12.5 or 412, intensity -3 |
| `clock_skew`        | `observed_at` shifted by `skew_s` (ahead: rejected; behind: stored as late) |
| `malformed_json`    | truncated JSON, bytes that are not UTF-8, or a JSON array                  |
| `wrong_version`     | a well-formed reading with `"v": 2`                                        |
| `duplicate`         | the same bytes published twice (two PUBLISH packets)                       |
| `store_and_forward` | the connection drops without a DISCONNECT (the broker publishes the Last   |
|                     | Will `offline`); readings are kept, and after the reconnect `online` is    |
|                     | followed by a burst of them with their original `observed_at` and `seq`    |

Every reading that is measured consumes a `seq`, so a dead-lettered one shows as a gap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

from simulators.traffic_model import (
    S_FAULT,
    S_FAULT_KIND,
    S_FAULT_LEN,
    S_FAULT_SKEW,
    S_FAULT_VARIANT,
    Reading,
    draw,
    millis,
    moment_key,
)


class FaultKind(StrEnum):
    SILENT = "silent"
    STUCK = "stuck"
    OUT_OF_RANGE = "out_of_range"
    CLOCK_SKEW = "clock_skew"
    MALFORMED_JSON = "malformed_json"
    WRONG_VERSION = "wrong_version"
    DUPLICATE = "duplicate"
    STORE_AND_FORWARD = "store_and_forward"


# Faults that, drawn at random, spoil a single reading; the others last a while.
ONE_SHOT = frozenset(
    {FaultKind.OUT_OF_RANGE, FaultKind.MALFORMED_JSON, FaultKind.WRONG_VERSION, FaultKind.DUPLICATE}
)
ICT = timezone(timedelta(hours=7), "ICT")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    start: float
    end: float  # exclusive; end == start affects exactly the reading at ``start``
    skew_s: float = 600.0
    random: bool = False

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end or t == self.start

    def over(self, t: float) -> bool:
        return t >= self.end and t != self.start


def random_fault(
    seed: int,
    index: int,
    t: float,
    *,
    rate: float,
    kinds: tuple[FaultKind, ...],
    interval_s: float,
) -> Fault | None:
    """The fault sensor ``index`` starts at its reading ``t``, if any: ``rate`` is the chance
    per reading. One-shot kinds spoil that reading; the others last 10-120 s (at least two
    readings)."""
    if rate <= 0 or not kinds:
        return None
    key = moment_key(seed, index, t)
    if draw(key, S_FAULT) >= rate:
        return None
    kind = kinds[int(draw(key, S_FAULT_KIND) * len(kinds))]
    if kind in ONE_SHOT:
        return Fault(kind, t, t, random=True)
    length = max(2 * interval_s, 10 + 110 * draw(key, S_FAULT_LEN))
    skew = draw(key, S_FAULT_SKEW)
    # Ahead by 6-60 min (rejected) or behind by 6-60 min (late but valid): half each.
    skew_s = (1 if skew < 0.5 else -1) * (360 + 3240 * (skew * 2 % 1))
    return Fault(kind, t, t + length, skew_s=round(skew_s, 3), random=True)


def format_time(t: float, local: bool) -> str:
    """ISO 8601 with milliseconds and an explicit offset: ``Z``, or ``+07:00`` for sensors that
    keep local time (both are valid on the wire)."""
    when = datetime.fromtimestamp(millis(t) / 1000, UTC)
    if local:
        return when.astimezone(ICT).isoformat(timespec="milliseconds")
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


OUT_OF_RANGE_VARIANTS: tuple[tuple[str, float | int], ...] = (
    ("occupancy", 1.7),
    ("average_speed", -12.5),
    ("average_speed", 412.0),
    ("intensity", -3),
)


def render(
    *,
    device_id: str,
    seq: int,
    t: float,
    values: Reading,
    interval_s: int,
    local_time: bool,
    kinds: Iterable[FaultKind] = (),
    skew_s: float = 0.0,
    variant: float = 0.0,
) -> list[bytes]:
    """The payload(s) one reading is published as, with the given message faults applied.

    ``variant`` (0..1) picks among the ways a fault can look (which field goes out of range,
    how the JSON is broken); pass :func:`variant_of` for a reproducible choice.
    """
    active = set(kinds)
    stamp = t + skew_s if FaultKind.CLOCK_SKEW in active else t
    fields: dict[str, object] = {
        "v": 2 if FaultKind.WRONG_VERSION in active else 1,
        "device_id": device_id,
        "seq": seq,
        "observed_at": format_time(stamp, local_time),
        "intensity": values.intensity,
        "average_speed": values.average_speed,
        "occupancy": values.occupancy,
        "interval_s": interval_s,
    }
    if FaultKind.OUT_OF_RANGE in active:
        name, bad = OUT_OF_RANGE_VARIANTS[int(variant * len(OUT_OF_RANGE_VARIANTS))]
        fields[name] = bad
    body = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    if FaultKind.MALFORMED_JSON in active:
        pick = int(variant * 3)
        if pick == 0:
            body = body[: len(body) // 2]  # cut off mid-message
        elif pick == 1:
            body = b"\xff\xfe" + body[2:]  # not UTF-8 (a corrupted buffer)
        else:
            body = json.dumps([device_id, seq, values.average_speed]).encode()  # not an object
    return [body, body] if FaultKind.DUPLICATE in active else [body]


def variant_of(seed: int, index: int, t: float) -> float:
    return draw(moment_key(seed, index, t), S_FAULT_VARIANT)
