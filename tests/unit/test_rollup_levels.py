"""The pure parts of the rollups: bucket arithmetic, covering a range with rollup levels,
local days, KPIs against last week, retention limits and the continuous-aggregate DDL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ioc.rollups import licence, retention, sql
from ioc.rollups.config import RollupSettings
from ioc.rollups.levels import (
    AVAILABILITY_LEVELS,
    HOUR,
    MINUTE,
    QUARTER,
    SLOT,
    TRAFFIC_LEVELS,
    Kpi,
    ceil,
    day_bounds,
    day_start,
    floor,
    runs,
    tiers,
    whole_hour_offset,
)

T = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
VN = "Asia/Ho_Chi_Minh"


def at(h: int, m: int = 0) -> datetime:
    return T + timedelta(hours=h, minutes=m)


def test_floor_and_ceil_align_to_the_epoch() -> None:
    t = datetime(2026, 11, 25, 10, 7, 31, 5, tzinfo=UTC)
    assert floor(t, QUARTER.width) == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert ceil(t, QUARTER.width) == datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
    assert ceil(at(10), HOUR.width) == at(10)
    assert floor(at(10, 59), HOUR.width) == at(10)


def test_tiers_use_the_coarsest_buckets_that_fit() -> None:
    got = [(lv.name, a, b) for lv, a, b in tiers(at(0, 7), at(2, 31), TRAFFIC_LEVELS)]
    assert got == [
        ("1m", at(0, 7), at(0, 15)),
        ("15m", at(0, 15), at(1)),
        ("1h", at(1), at(2)),
        ("15m", at(2), at(2, 30)),
        ("1m", at(2, 30), at(2, 31)),
    ]
    assert [lv.name for lv, _, _ in tiers(at(0, 5), at(0, 50), AVAILABILITY_LEVELS)] == ["5m"]
    assert tiers(at(3), at(3), TRAFFIC_LEVELS) == []


def test_tiers_refuse_a_range_finer_than_the_finest_level() -> None:
    try:
        tiers(at(0, 7), at(0, 9), AVAILABILITY_LEVELS)
    except ValueError as exc:
        assert "not aligned" in str(exc)
    else:
        raise AssertionError("a range inside a 5-minute slot was accepted")


@given(st.integers(0, 3000), st.integers(0, 3000))
def test_tiers_cover_the_range_exactly_with_aligned_pieces(a: int, n: int) -> None:
    t0, t1 = T + timedelta(minutes=a), T + timedelta(minutes=a + n)
    pieces = tiers(t0, t1, TRAFFIC_LEVELS)
    cursor = t0
    for level, s, e in pieces:
        assert s == cursor and s < e
        assert floor(s, level.width) == s and floor(e, level.width) == e
        cursor = e
    assert cursor == t1 or (n == 0 and not pieces)
    assert len(pieces) <= 5  # at most: minutes, quarters, hours, quarters, minutes


def test_runs_merge_consecutive_buckets() -> None:
    hours = [at(5), at(1), at(2), at(9), at(2)]
    assert runs(hours, HOUR.width) == [(at(1), at(3)), (at(5), at(6)), (at(9), at(10))]
    assert runs([], HOUR.width) == []


def test_local_days_in_vietnam_start_at_17_utc() -> None:
    assert day_start(datetime(2026, 11, 25, 16, 59, tzinfo=UTC), VN) == datetime(
        2026, 11, 24, 17, tzinfo=UTC
    )
    assert day_start(datetime(2026, 11, 25, 17, 0, tzinfo=UTC), VN) == datetime(
        2026, 11, 25, 17, tzinfo=UTC
    )
    assert day_bounds(date(2026, 11, 26), VN) == (
        datetime(2026, 11, 25, 17, tzinfo=UTC),
        datetime(2026, 11, 26, 17, tzinfo=UTC),
    )
    assert whole_hour_offset(VN, T)
    assert not whole_hour_offset("Asia/Kolkata", T)


def test_kpi_change_against_last_week() -> None:
    k = Kpi(120.0, 100.0)
    assert k.change == 20.0 and k.change_pct == 20.0
    assert Kpi(5.0, 0.0).change_pct is None  # nothing last week: no relative change
    assert Kpi(5.0, 0.0).change == 5.0
    assert Kpi(None, 3.0).change is None and Kpi(3.0, None).change_pct is None


def test_retention_limits_follow_the_settings() -> None:
    s = RollupSettings(raw_retention_days=30, retention_days=730, retention_1m_days=90)
    keep = {p.relation: p.keep.days for p in retention.policies(s)}
    assert keep["traffic_observations"] == 30 and keep["camera_health"] == 30
    assert keep["traffic_area_1h"] == 730 and keep["availability_area_5m"] == 730
    assert keep["traffic_sensor_1m"] == 90 and keep["traffic_area_1m"] == 90
    assert keep["traffic_sensor_1m_ca"] == 90 and keep["traffic_sensor_1h_ca"] == 730
    assert {p.relation: p.keep.days for p in retention.policies(RollupSettings())}[
        "traffic_sensor_1m"
    ] == 730


def test_continuous_aggregates_are_generated_for_each_sensor_level() -> None:
    statements = licence.tsl_statements(late_days=3)
    creates = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    policies = [s for s in statements if "add_continuous_aggregate_policy" in s]
    assert len(creates) == len(policies) == len(TRAFFIC_LEVELS)
    for level, create, policy in zip(TRAFFIC_LEVELS, creates, policies, strict=True):
        name = f"traffic_sensor_{level.name}_ca"
        assert f"IF NOT EXISTS {name}\n" in create
        assert "timescaledb.continuous" in create and "materialized_only = false" in create
        assert create.endswith("WITH NO DATA")
        assert f"time_bucket('{level.interval}', o.time)" in create
        assert sql.RAW_SUMS in create  # the very expressions of the app path
        assert ("percentile_cont" in create) == (level is not MINUTE)
        assert f"'{name}'" in policy and "if_not_exists => true" in policy
        w = licence.refresh_window(level, late_days=3)
        assert f"start_offset => interval '{3 * 86400} seconds'" in policy
        assert f"end_offset => interval '{int(level.width.total_seconds())} seconds'" in policy
        assert w.start_offset < timedelta(days=RollupSettings().raw_retention_days)
        assert w.start_offset > w.end_offset + level.width  # two buckets at least


def test_sql_levels_name_existing_tables() -> None:
    for level in TRAFFIC_LEVELS:
        assert f"traffic_area_{level.name}" in sql.area_from_sensors(level)
        assert f"traffic_area_{level.name}" in sql.area_from_raw(level)
    assert "traffic_sensor_1m" in sql.sensor_from_raw(MINUTE)
    assert "JOIN traffic_sensor_15m s" in sql.sensor_from_finer(HOUR, QUARTER)
    assert SLOT.interval == "300 seconds"
