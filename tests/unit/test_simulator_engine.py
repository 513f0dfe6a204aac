"""The engine's congestion: on demand by area (what `ioc simulate congest` sends), spreading to
neighbours, clearing; random jams; sharding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from statistics import mean

from ioc.config import PROJECT_ROOT
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import make_fleet
from simulators.traffic_engine import Action, EngineConfig, Publish, TrafficEngine

FLEET = make_fleet(load_geography(PROJECT_ROOT / "config/areas/binh-phuoc.yaml"), 120, 58)
T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC).timestamp()  # 11:00 in Vietnam
INDEX = {s.id: i for i, s in enumerate(FLEET)}


def engine(interval_s: float = 2.0, **config: object) -> TrafficEngine:
    e = TrafficEngine(FLEET, EngineConfig(interval_s=interval_s, **config))  # type: ignore[arg-type]
    e.start(T0)
    return e


def run(e: TrafficEngine, start: float, until: float) -> list[Action]:
    out: list[Action] = []
    t = start
    while t <= until:
        out.extend(e.advance(t))
        t = round(t + 0.5, 3)
    return out


def speeds(actions: list[Action]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for a in actions:
        if isinstance(a, Publish):
            out.setdefault(a.index, []).append(json.loads(a.payload)["average_speed"])
    return out


def test_congest_an_area_brings_its_sensors_to_the_jam_speed_at_once() -> None:
    e = engine()
    run(e, T0, T0 + 10)
    area = [i for i, s in enumerate(FLEET) if s.area_id == "dong-xoai"]
    cmd = wire.SimControl(action="congestion", area_id="dong-xoai", duration_s=120)
    assert e.control(cmd, T0 + 10) == len(area)
    jammed = speeds(run(e, T0 + 10.5, T0 + 20))
    for i in area:
        assert all(4 <= v <= 12 for v in jammed[i]), (FLEET[i].id, jammed[i])
        assert abs(mean(jammed[i]) - 8.0) < 1.5
    others = [i for i in jammed if FLEET[i].area_id != "dong-xoai"]
    assert mean(mean(jammed[i]) for i in others) > 25


def test_congestion_spreads_to_neighbours_then_dissolves() -> None:
    e = engine()
    origin = INDEX["ts-00001"]
    first = [INDEX[n] for n in FLEET[origin].neighbours]
    second = {INDEX[m] for n in first for m in FLEET[n].neighbours} - {origin, *first}
    far = [i for i, s in enumerate(FLEET) if s.area_id != FLEET[origin].area_id]
    cmd = wire.SimControl(action="congestion", device_ids=["ts-00001"], duration_s=600)
    e.control(cmd, T0)
    early = speeds(run(e, T0, T0 + 60))
    assert max(early[origin]) < 12
    assert all(min(early[n]) > 15 for n in first)  # not yet
    later = speeds(run(e, T0 + 60.5, T0 + 400))
    for n in first:
        assert min(later[n]) < 0.7 * min(early[n])  # reached the neighbours
    assert all(min(later[m]) < 0.85 * mean(early[m]) for m in second)  # milder, further out
    assert all(min(later[i]) > 15 for i in far)
    e.control(wire.SimControl(action="clear", device_ids=["ts-00001"]), T0 + 400)
    recovered = speeds(run(e, T0 + 400.5, T0 + 800))
    assert min(recovered[origin][-20:]) > 15
    assert all(min(recovered[n][-20:]) > 15 for n in first)


def test_clear_without_targets_ends_every_jam() -> None:
    e = engine()
    e.control(wire.SimControl(action="congestion", area_id="loc-ninh", duration_s=3600), T0)
    run(e, T0, T0 + 10)
    e.control(wire.SimControl(action="clear"), T0 + 10)
    after = speeds(run(e, T0 + 80, T0 + 100))
    assert all(min(v) > 15 for v in after.values())


def test_random_jams_happen_at_the_configured_rate_and_are_deterministic() -> None:
    quiet = speeds(run(engine(10), T0, T0 + 1800))
    assert all(min(v) > 15 for v in quiet.values())
    busy = speeds(run(engine(10, congestion_per_hour=20), T0, T0 + 1800))
    jammed = {i for i, v in busy.items() if min(v) < 12}
    assert jammed
    # A pure function of the seed and the clock: a second engine started later agrees.
    late = engine(10, congestion_per_hour=20)
    late.start(T0 + 900)
    again = speeds(run(late, T0 + 900, T0 + 1800))
    assert {i for i, v in again.items() if min(v) < 12} <= jammed


def test_shards_split_the_fleet_and_agree_with_one_process() -> None:
    whole = run(engine(fault_rate=0.02), T0, T0 + 30)
    parts: list[Action] = []
    owned: list[int] = []
    for k in range(3):
        e = TrafficEngine(FLEET, EngineConfig(interval_s=2.0, fault_rate=0.02), shard=k, shards=3)
        e.start(T0)
        owned += e.owned
        parts += run(e, T0, T0 + 30)
    assert sorted(owned) == list(range(len(FLEET)))
    key = lambda a: (a.index, getattr(a, "observed_at", 0), getattr(a, "payload", b""))  # noqa: E731
    assert sorted(parts, key=key) == sorted(whole, key=key)


def test_a_starved_loop_skips_readings_instead_of_replaying_them_late() -> None:
    e = engine()
    e.advance(T0 + 60)  # 30 intervals late in one go
    assert e.skipped > 0
    assert all(a.observed_at >= T0 + 48 for a in e.advance(T0 + 62) if isinstance(a, Publish))
