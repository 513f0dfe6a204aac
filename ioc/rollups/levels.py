"""Rollup levels and the time arithmetic around them. Pure: no I/O, no database.

A range is read from the coarsest buckets that fit inside it and finer ones at its edges
(``tiers``), so "today so far" costs a few dozen rows whatever the size of the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

# The dashboard's definitions (routes_summary.py), repeated here because ioc.rollups may not
# import ioc.api: a sensor is congested below half its free-flow speed.
CONGESTED_BELOW = 0.5
DEFAULT_FREE_FLOW_KMH = 50.0
WEEK = timedelta(days=7)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Level:
    name: str  # as in the table names and the API: "1m", "15m", "1h", "5m"
    width: timedelta

    @property
    def interval(self) -> str:
        """The width as a PostgreSQL interval literal."""
        return f"{int(self.width.total_seconds())} seconds"


MINUTE = Level("1m", timedelta(minutes=1))
SLOT = Level("5m", timedelta(minutes=5))
QUARTER = Level("15m", timedelta(minutes=15))
HOUR = Level("1h", timedelta(hours=1))
TRAFFIC_LEVELS = (MINUTE, QUARTER, HOUR)  # finest first
AVAILABILITY_LEVELS = (SLOT, HOUR)
BY_NAME = {lv.name: lv for lv in (*TRAFFIC_LEVELS, SLOT)}


def floor(t: datetime, width: timedelta) -> datetime:
    """Start of the bucket holding ``t`` (buckets aligned to the Unix epoch, as time_bucket's
    are for widths that divide a day)."""
    step = width // timedelta(microseconds=1)
    us = (t - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=us // step * step)


def ceil(t: datetime, width: timedelta) -> datetime:
    f = floor(t, width)
    return f if f == t else f + width


def aligned(t: datetime, width: timedelta) -> bool:
    return floor(t, width) == t


def tiers(
    t0: datetime, t1: datetime, levels: tuple[Level, ...]
) -> list[tuple[Level, datetime, datetime]]:
    """Cover [t0, t1) with whole buckets: the coarsest level in the middle, finer ones at the
    edges. ``levels`` is finest first; t0 and t1 must be aligned to the finest level.
    Returns (level, start, end) pieces, in time order, none empty."""
    if t1 <= t0:
        return []
    finest = levels[0]
    if not (aligned(t0, finest.width) and aligned(t1, finest.width)):
        raise ValueError(f"[{t0}, {t1}) is not aligned to {finest.name} buckets")
    if len(levels) == 1:
        return [(finest, t0, t1)]
    coarse = levels[-1]
    a, b = ceil(t0, coarse.width), floor(t1, coarse.width)
    if a >= b:
        return tiers(t0, t1, levels[:-1])
    return [*tiers(t0, a, levels[:-1]), (coarse, a, b), *tiers(b, t1, levels[:-1])]


def runs(starts: list[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """Merge bucket starts into [start, end) runs of consecutive buckets, in time order."""
    out: list[tuple[datetime, datetime]] = []
    for s in sorted(set(starts)):
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], s + width)
        else:
            out.append((s, s + width))
    return out


def buckets(t0: datetime, t1: datetime, width: timedelta) -> list[datetime]:
    """Bucket starts in [t0, t1) (t0 aligned)."""
    out, t = [], t0
    while t < t1:
        out.append(t)
        t += width
    return out


# ------------------------------------------------------------------------- local days ---


def day_start(t: datetime, tz: str) -> datetime:
    """Local midnight of the day holding ``t``, as a UTC instant."""
    local = t.astimezone(ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of a calendar day, as UTC instants."""
    z = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=z)
    nxt = day + timedelta(days=1)
    return start.astimezone(UTC), datetime(nxt.year, nxt.month, nxt.day, tzinfo=z).astimezone(UTC)


def local_day(t: datetime, tz: str) -> date:
    return t.astimezone(ZoneInfo(tz)).date()


def step_start(t: datetime, step: str, tz: str) -> datetime:
    """Start of the bucket of ``step`` ("1m", "15m", "1h", or "1d": local days) holding t."""
    return day_start(t, tz) if step == "1d" else floor(t, BY_NAME[step].width)


def step_end(t: datetime, step: str, tz: str) -> datetime:
    """End of the bucket holding the instant just before ``t``: a range end aligned outward."""
    s = step_start(t, step, tz)
    return s if s == t else advance(s, step, 1, tz)


def advance(t: datetime, step: str, n: int, tz: str) -> datetime:
    """``n`` buckets of ``step`` after the bucket start ``t`` (local days for "1d")."""
    if step != "1d":
        return t + n * BY_NAME[step].width
    return day_bounds(local_day(t, tz) + timedelta(days=n), tz)[0]


def whole_hour_offset(tz: str, at: datetime) -> bool:
    """Local days are unions of UTC hours (true for Asia/Ho_Chi_Minh, UTC+7): then daily
    figures can be added up from hourly rollups exactly."""
    off = datetime.fromtimestamp(at.timestamp(), ZoneInfo(tz)).utcoffset() or timedelta(0)
    return off % timedelta(hours=1) == timedelta(0)


# ------------------------------------------------------------------------------ KPIs ---


@dataclass(frozen=True, slots=True)
class Kpi:
    """A figure and the same figure at the same time last week."""

    value: float | None
    last_week: float | None

    @property
    def change(self) -> float | None:
        if self.value is None or self.last_week is None:
            return None
        return self.value - self.last_week

    @property
    def change_pct(self) -> float | None:
        """Relative change, %; None when last week was zero or unknown."""
        if self.value is None or not self.last_week:
            return None
        return 100.0 * (self.value - self.last_week) / self.last_week


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def pct(num: float | None, den: float | None) -> float | None:
    r = ratio(num, den)
    return None if r is None else 100.0 * r
