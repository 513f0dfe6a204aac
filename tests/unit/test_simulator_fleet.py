"""Sensor placement: along roads radiating from each area's centre, linked to neighbours."""

from __future__ import annotations

import math
import time
from collections import defaultdict

from ioc.config import PROJECT_ROOT
from ioc.db.seed import load_geography
from ioc.domain.fleet import KM_PER_DEG_LAT, make_fleet

GEO = load_geography(PROJECT_ROOT / "config/areas/binh-phuoc.yaml")
AREAS = GEO.by_id()


def km_from_centre(lat: float, lon: float, area_id: str) -> float:
    a = AREAS[area_id]
    east = (lon - a.lon) * 111.320 * math.cos(math.radians(a.lat))
    return math.hypot(east, (lat - a.lat) * KM_PER_DEG_LAT)


def test_ten_thousand_sensors_are_placed_quickly_and_deterministically() -> None:
    started = time.perf_counter()
    fleet = make_fleet(GEO, 10_000, seed=58)
    assert time.perf_counter() - started < 3
    assert fleet == make_fleet(GEO, 10_000, seed=58)
    assert len({s.id for s in fleet}) == len({s.name for s in fleet}) == 10_000
    assert fleet[-1].id == "ts-10000"


def test_sensors_lie_along_roads_from_the_area_centre() -> None:
    fleet = make_fleet(GEO, 600, seed=58)
    roads: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for s in fleet:
        assert s.road and s.road in s.name
        straight = km_from_centre(s.lat, s.lon, s.area_id)
        assert straight <= s.road_km + 0.01  # a road is never shorter than the straight line
        assert straight <= AREAS[s.area_id].radius_km
        roads[(s.area_id, s.road)].append((s.road_km, s.lat, s.lon))
    assert 3 * len(GEO.leaves()) <= len(roads) <= 6 * len(GEO.leaves())
    for points in roads.values():  # consecutive sensors along a road are close together
        points.sort()
        for (k1, la1, lo1), (k2, la2, lo2) in zip(points, points[1:], strict=False):
            gap = math.hypot((la2 - la1) * KM_PER_DEG_LAT, (lo2 - lo1) * 109.0)
            assert gap <= (k2 - k1) + 0.01


def test_neighbours_are_symmetric_connected_and_mostly_local() -> None:
    fleet = make_fleet(GEO, 2_000, seed=58)
    by_id = {s.id: s for s in fleet}
    for s in fleet:
        assert s.neighbours and s.id not in s.neighbours
        assert all(s.id in by_id[n].neighbours for n in s.neighbours)
    seen, todo = {fleet[0].id}, [fleet[0].id]
    while todo:
        for n in by_id[todo.pop()].neighbours:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert len(seen) == len(fleet)  # one road network: congestion can travel anywhere
    links = [(s, by_id[n]) for s in fleet for n in s.neighbours]
    across = sum(a.area_id != b.area_id for a, b in links)
    assert 0 < across < 0.05 * len(links)  # towns are linked by a few inter-city roads


def test_road_classes_set_speed_and_capacity() -> None:
    fleet = make_fleet(GEO, 600, seed=58)
    national = [s for s in fleet if s.road.startswith("QL")]
    streets = [s for s in fleet if s.road.startswith("Đường")]
    assert national and streets
    assert min(s.capacity_vph for s in national) > max(s.capacity_vph for s in streets) / 1.0 - 1
    assert sum(s.free_flow_kmh for s in national) / len(national) > 1.3 * (
        sum(s.free_flow_kmh for s in streets) / len(streets)
    )
