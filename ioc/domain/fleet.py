"""The demo fleet: where the simulated traffic sensors stand, derived from the geography and a seed.

Deterministic, so the seeder (which registers devices in the database) and the simulator (which
publishes as them) agree without talking to each other.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ioc.domain.geo import Geography

KM_PER_DEG_LAT = 110.574


@dataclass(frozen=True, slots=True)
class SensorSpec:
    id: str
    name: str
    area_id: str
    lat: float
    lon: float
    free_flow_kmh: float  # typical uncongested speed at this point
    capacity_vph: int  # vehicles per hour at capacity


def traffic_sensor_id(index: int) -> str:
    return f"ts-{index:05d}"


def make_fleet(geo: Geography, count: int, seed: int) -> list[SensorSpec]:
    """Spread ``count`` sensors over the leaf areas, round-robin, scattered within each radius."""
    rng = random.Random(seed)
    leaves = geo.leaves()
    if not leaves or count <= 0:
        return []
    fleet: list[SensorSpec] = []
    for i in range(count):
        area = leaves[i % len(leaves)]
        # sqrt for a uniform spread over the disc; roads cluster near the centre, so shrink a bit.
        r_km = area.radius_km * 0.8 * math.sqrt(rng.random())
        theta = rng.random() * 2 * math.pi
        dlat = (r_km * math.sin(theta)) / KM_PER_DEG_LAT
        dlon = (r_km * math.cos(theta)) / (111.320 * math.cos(math.radians(area.lat)))
        road = rng.choice(("QL13", "QL14", "ĐT741", "ĐT753", "ĐT759", "Đường phố"))
        fleet.append(
            SensorSpec(
                id=traffic_sensor_id(i + 1),
                name=f"{road} – {area.name} #{i // len(leaves) + 1}",
                area_id=area.id,
                lat=round(area.lat + dlat, 6),
                lon=round(area.lon + dlon, 6),
                free_flow_kmh=round(rng.uniform(40, 70), 1),
                capacity_vph=rng.choice((600, 900, 1200, 1800)),
            )
        )
    return fleet
