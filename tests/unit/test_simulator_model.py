"""The traffic value model: daily profile, weekends, capacity, jams and their spread."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from statistics import mean
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioc.config import PROJECT_ROOT
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import SensorSpec, make_fleet
from simulators.traffic_model import Jam, Reading, demand, poisson, random_jam, reading, spread

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ICT = timezone(timedelta(hours=7))
FLEET = make_fleet(load_geography(PROJECT_ROOT / "config/areas/binh-phuoc.yaml"), 200, 58)


def at(day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of a local time in November 2026 (the 25th is a Wednesday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=ICT).timestamp()


def fleet_readings(t: float, interval_s: float = 60.0, seed: int = 58) -> list[Reading]:
    return [reading(s, i, t, seed=seed, interval_s=interval_s, tz=TZ) for i, s in enumerate(FLEET)]


def test_weekday_has_morning_and_evening_peaks_and_quiet_nights() -> None:
    night, morning, midday, evening = (
        fleet_readings(at(25, h, m)) for h, m in ((3, 0), (7, 15), (14, 0), (17, 20))
    )
    n_night, n_morning, n_midday, n_evening = (
        mean(r.intensity for r in x) for x in (night, morning, midday, evening)
    )
    assert n_morning > 10 * n_night and n_evening > 10 * n_night
    assert n_morning > 1.4 * n_midday and n_evening > 1.4 * n_midday
    assert mean(r.average_speed for r in evening) < mean(r.average_speed for r in night) - 3
    assert mean(r.occupancy for r in evening) > 5 * mean(r.occupancy for r in night)


def test_rush_hour_alone_never_looks_like_a_jam() -> None:
    for hour, minute in ((7, 15), (17, 20)):
        assert min(r.average_speed for r in fleet_readings(at(25, hour, minute), 2.0)) > 18


def test_weekend_loses_the_commute_peak_saturday_half_way() -> None:
    wed, sat, sun = (demand(datetime(2026, 11, d, 7, 15, tzinfo=ICT)) for d in (25, 28, 29))
    assert sun < 0.7 * wed
    assert sun < sat < wed
    assert demand(datetime(2026, 11, 29, 3, 0, tzinfo=ICT)) < 0.1


def test_profile_follows_vietnam_local_time_not_utc() -> None:
    # 00:15 UTC is 07:15 in Đồng Xoài: the morning peak.
    peak_utc = datetime(2026, 11, 25, 0, 15, tzinfo=UTC).timestamp()
    night_utc = datetime(2026, 11, 25, 20, 0, tzinfo=UTC).timestamp()  # 03:00 local
    assert mean(r.intensity for r in fleet_readings(peak_utc)) > 10 * mean(
        r.intensity for r in fleet_readings(night_utc)
    )


def test_capacity_scales_the_flow() -> None:
    spec = dataclasses.replace(FLEET[0], capacity_vph=1000)
    big = dataclasses.replace(spec, capacity_vph=2000)
    t0 = at(25, 10)
    small_n = sum(
        reading(spec, 0, t0 + k * 60, seed=1, interval_s=60, tz=TZ).intensity for k in range(30)
    )
    big_n = sum(
        reading(big, 0, t0 + k * 60, seed=1, interval_s=60, tz=TZ).intensity for k in range(30)
    )
    assert 1.7 < big_n / small_n < 2.3


def test_readings_are_a_pure_function_of_sensor_time_and_seed() -> None:
    t = at(25, 8, 3)
    assert fleet_readings(t) == fleet_readings(t)
    assert fleet_readings(t, seed=59) != fleet_readings(t)
    assert fleet_readings(t + 1) != fleet_readings(t)


def test_a_jam_pulls_speed_down_and_occupancy_up() -> None:
    t = at(25, 10)
    for i, spec in enumerate(FLEET[:30]):
        r = reading(spec, i, t, seed=58, interval_s=2, tz=TZ, jam=(1.0, 8.0))
        assert 5 <= r.average_speed <= 11
        assert r.occupancy > 0.5


def test_jam_spreads_hop_by_hop_milder_further_out_then_dissolves() -> None:
    jam = Jam(start=1000, end=1600, speed_kmh=8, hops=2, hop_delay_s=90, dissolve_s=60)
    assert jam.severity(0, 999) == 0
    assert jam.severity(0, 1000) == 1.0  # origins jam at once
    assert jam.severity(1, 1080) == 0  # neighbours not yet
    assert 0 < jam.severity(1, 1100) < jam.severity(1, 1140) == pytest.approx(2 / 3)
    assert jam.severity(2, 1179) == 0 and jam.severity(2, 1300) == pytest.approx(1 / 3)
    assert jam.severity(3, 1500) == 0  # beyond the reach
    # Dissolves from the origin outwards.
    assert 0 < jam.severity(0, 1630) < 1 and jam.severity(0, 1660) == 0
    assert jam.severity(1, 1630) == pytest.approx(2 / 3) and jam.severity(2, 1700) > 0
    assert jam.severity(2, jam.over_at) == 0


def test_a_jam_cleared_early_never_reaches_the_outer_hops() -> None:
    jam = Jam(start=0, end=100, speed_kmh=8, hops=2, hop_delay_s=90)
    assert jam.severity(1, 120) > 0
    assert all(jam.severity(2, t) == 0 for t in range(0, 400, 5))


def test_spread_walks_the_neighbour_graph() -> None:
    chain = [[1], [0, 2], [1, 3], [2, 4], [3]]
    assert spread(chain, [0], 2) == {0: 0, 1: 1, 2: 2}
    assert spread(chain, [0, 4], 1) == {0: 0, 4: 0, 1: 1, 3: 1}


def test_random_jams_depend_only_on_seed_and_minute() -> None:
    jams = [random_jam(7, slot, 300, per_hour=6) for slot in range(10_000)]
    started = [j for j in jams if j is not None]
    assert 0.05 < len(started) / len(jams) < 0.15  # 6 an hour = 0.1 a minute
    assert jams == [random_jam(7, slot, 300, per_hour=6) for slot in range(10_000)]
    assert all(0 <= origin < 300 and 4 <= jam.speed_kmh <= 14 for origin, jam in started)
    assert random_jam(7, 1, 300, per_hour=0) is None


def test_poisson_counts_have_the_right_mean() -> None:
    draws = [poisson(3.0, (k + 0.5) / 2000) for k in range(2000)]
    assert abs(mean(draws) - 3.0) < 0.05
    assert poisson(0.0, 0.9) == 0 and poisson(400.0, 0.5) == 400


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(0, len(FLEET) - 1),
    t=st.floats(1.6e9, 2.2e9),
    severity=st.floats(0, 1),
    jam_speed=st.floats(0, 300),
    interval=st.sampled_from([1.0, 2.0, 60.0, 3600.0]),
)
def test_every_reading_fits_the_wire_contract(
    index: int, t: float, severity: float, jam_speed: float, interval: float
) -> None:
    spec: SensorSpec = FLEET[index]
    r = reading(spec, index, t, seed=3, interval_s=interval, tz=TZ, jam=(severity, jam_speed))
    wire.TrafficObservation(
        device_id=spec.id,
        seq=0,
        observed_at=datetime.fromtimestamp(t, UTC),
        intensity=r.intensity,
        average_speed=r.average_speed,
        occupancy=r.occupancy,
        interval_s=round(interval),
    )
