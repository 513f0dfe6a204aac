"""How the statistics API cuts a range into pages: aligned outward to the step (local days for
"1d"), bounded in size, and resumed only from a cursor of the same range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException

from ioc.api.routes_stats import _window

VN = "Asia/Ho_Chi_Minh"
T = datetime(2026, 11, 25, 10, 7, tzinfo=UTC)


def test_ranges_are_aligned_outward_and_paged_by_buckets() -> None:
    s, e, p0, p1, nxt = _window(T, T + timedelta(hours=2), "15m", VN, 3, None)
    assert (s, e) == (T.replace(minute=0), T.replace(hour=12, minute=15))
    assert (p0, p1) == (s, s + timedelta(minutes=45)) and nxt == p1.isoformat()
    *_, p0b, p1b, nxt2 = _window(T, T + timedelta(hours=2), "15m", VN, 3, nxt)
    assert p0b == p1 and p1b == p1 + timedelta(minutes=45) and nxt2 is not None
    *_, last_end, done = _window(T, T + timedelta(hours=2), "15m", VN, 100, None)
    assert last_end == e and done is None


def test_days_are_local_days() -> None:
    s, e, p0, p1, nxt = _window(T, T + timedelta(days=3), "1d", VN, 2, None)
    assert s == datetime(2026, 11, 24, 17, tzinfo=UTC)  # midnight in Vietnam
    assert e == datetime(2026, 11, 28, 17, tzinfo=UTC)
    assert p1 == datetime(2026, 11, 26, 17, tzinfo=UTC) and nxt == p1.isoformat()


@pytest.mark.parametrize(
    ("start", "end", "step", "cursor", "message"),
    [
        (T, T, "1h", None, "after start"),
        (T, T + timedelta(days=3), "1m", None, "at most 2 days"),
        (T, T + timedelta(days=400), "1h", None, "at most 366 days"),
        (T, T + timedelta(hours=5), "1h", "noon", "not a time"),
        (T, T + timedelta(hours=5), "1h", "2026-11-25T09:00:00+00:00", "does not belong"),
        (T, T + timedelta(hours=5), "1h", "2026-11-25T11:30:00+00:00", "does not belong"),
        (T, T + timedelta(hours=5), "1h", "2026-11-25T11:00:00", "does not belong"),
    ],
)
def test_bad_ranges_and_cursors_are_refused(
    start: datetime, end: datetime, step: str, cursor: str | None, message: str
) -> None:
    with pytest.raises(HTTPException) as err:
        _window(start, end, step, VN, 10, cursor)  # type: ignore[arg-type]
    assert err.value.status_code == 422 and message in str(err.value.detail)
