"""The demo fleet: where the simulated traffic sensors stand, derived from the geography and a seed.

Deterministic, so the seeder (which registers devices in the database) and the simulator (which
publishes as them) agree without talking to each other.

Sensors are strung along a few synthetic roads per area rather than scattered: every leaf area
gets 3-6 roads radiating from its centre, the first ones heading towards the nearest other areas
(the inter-town national and provincial roads), the rest local streets. Sensors on a road are
neighbours of the next one along it; the innermost sensors of an area's roads meet at the
centre; the outer ends of two roads that head towards each other's towns are linked. Congestion
spreads over these links.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ioc.domain.geo import Area, Geography

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320

INTERCITY_ROADS = ("QL13", "QL14", "ĐT741", "ĐT751", "ĐT753", "ĐT756", "ĐT759")
STREETS = (
    "Hùng Vương",
    "Trần Hưng Đạo",
    "Lê Duẩn",
    "Nguyễn Huệ",
    "Quang Trung",
    "Lê Lợi",
    "Phú Riềng Đỏ",
    "Nguyễn Văn Linh",
    "Hai Bà Trưng",
    "Võ Văn Tần",
)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    id: str
    name: str
    area_id: str
    lat: float
    lon: float
    free_flow_kmh: float  # typical uncongested speed at this point
    capacity_vph: int  # vehicles per hour at capacity
    road: str = ""
    road_km: float = 0.0  # distance along the road from the area centre
    neighbours: tuple[str, ...] = ()  # ids of adjacent sensors (congestion spreads over these)


def traffic_sensor_id(index: int) -> str:
    return f"ts-{index:05d}"


@dataclass
class _Road:
    area: Area
    name: str
    kind: str  # "national", "provincial" or "street"
    bearing: float  # initial heading, radians clockwise from north
    towards: str | None  # id of the area this road leads to
    points: list[tuple[float, float]]  # polyline in km (east, north) from the area centre
    length_km: float
    members: list[int] = field(default_factory=list)  # fleet indexes, sorted along the road


def _bearing(a: Area, b: Area) -> float:
    east = (b.lon - a.lon) * KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(a.lat))
    north = (b.lat - a.lat) * KM_PER_DEG_LAT
    return math.atan2(east, north)


def _distance_km(a: Area, b: Area) -> float:
    east = (b.lon - a.lon) * KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(a.lat))
    return math.hypot(east, (b.lat - a.lat) * KM_PER_DEG_LAT)


def _angle_gap(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def _roads_for(area: Area, others: list[Area], rng: random.Random) -> list[_Road]:
    n_roads = max(3, min(6, round(2 + area.radius_km / 5)))
    nearest = sorted(others, key=lambda o: _distance_km(area, o))
    headings: list[tuple[float, str | None]] = []
    for other in nearest[: min(3, n_roads - 1)]:
        bearing = _bearing(area, other)
        if all(_angle_gap(bearing, h) > math.radians(35) for h, _ in headings):
            headings.append((bearing + rng.uniform(-0.1, 0.1), other.id))
    while len(headings) < n_roads:
        # A local street in the widest remaining gap between roads.
        taken = sorted(h % (2 * math.pi) for h, _ in headings) or [rng.uniform(0, 2 * math.pi)]
        gaps = [
            ((taken[(i + 1) % len(taken)] - t) % (2 * math.pi) or 2 * math.pi, t)
            for i, t in enumerate(taken)
        ]
        width, start = max(gaps)
        headings.append((start + width / 2 + rng.uniform(-0.2, 0.2) * width / 2, None))
    roads = []
    intercity = rng.sample(INTERCITY_ROADS, len(INTERCITY_ROADS))
    streets = rng.sample(STREETS, len(STREETS))
    for bearing, towards in headings:
        if towards is not None:
            name = intercity.pop()
            kind = "national" if name.startswith("QL") else "provincial"
            length = area.radius_km * 0.9
        else:
            name, kind, length = "Đường " + streets.pop(), "street", area.radius_km * 0.6
        points, heading, x, y = [(0.0, 0.0)], bearing, 0.0, 0.0
        for _ in range(4):  # a gently winding polyline of four segments
            heading += rng.uniform(-0.25, 0.25)
            x += length / 4 * math.sin(heading)
            y += length / 4 * math.cos(heading)
            points.append((x, y))
        roads.append(_Road(area, name, kind, bearing, towards, points, length))
    return roads


def _point_along(road: _Road, km: float) -> tuple[float, float]:
    seg = road.length_km / (len(road.points) - 1)
    i = min(int(km / seg), len(road.points) - 2)
    f = (km - i * seg) / seg
    (x0, y0), (x1, y1) = road.points[i], road.points[i + 1]
    return x0 + (x1 - x0) * f, y0 + (y1 - y0) * f


def _link(links: list[set[int]], a: int, b: int) -> None:
    if a != b:
        links[a].add(b)
        links[b].add(a)


def make_fleet(geo: Geography, count: int, seed: int) -> list[SensorSpec]:
    """Place ``count`` sensors round-robin over the leaf areas, along each area's roads."""
    rng = random.Random(seed)
    leaves = geo.leaves()
    if not leaves or count <= 0:
        return []
    roads = {a.id: _roads_for(a, [o for o in leaves if o.id != a.id], rng) for a in leaves}
    area_of = [leaves[i % len(leaves)] for i in range(count)]
    placed: list[tuple[_Road, float]] = []
    for i, area in enumerate(area_of):
        road = roads[area.id][(i // len(leaves)) % len(roads[area.id])]
        # Denser near the centre, as real detector sites are.
        km = road.length_km * (0.03 + 0.97 * rng.random() ** 1.4)
        placed.append((road, km))
        road.members.append(i)
    links: list[set[int]] = [set() for _ in range(count)]
    for area_roads in roads.values():
        for road in area_roads:
            road.members.sort(key=lambda i: placed[i][1])
            for a, b in zip(road.members, road.members[1:], strict=False):
                _link(links, a, b)
        inner = [r.members[0] for r in area_roads if r.members]
        for a in inner:
            for b in inner:
                _link(links, a, b)
    for area_roads in roads.values():
        for road in area_roads:
            back = [r for r in roads.get(road.towards or "", []) if r.members]
            if road.members and back:
                reverse = road.bearing + math.pi
                facing = min(back, key=lambda r: _angle_gap(r.bearing, reverse))
                _link(links, road.members[-1], facing.members[-1])
    fleet: list[SensorSpec] = []
    ordinal: dict[str, int] = {}
    for i, (road, km) in enumerate(placed):
        area = road.area
        ordinal[area.id] = ordinal.get(area.id, 0) + 1
        east, north = _point_along(road, km)
        lon_scale = KM_PER_DEG_LON_EQUATOR * math.cos(math.radians(area.lat))
        urban = km < 0.3 * area.radius_km
        if road.kind == "national":
            free, capacity = rng.uniform(60, 80), rng.choice((1800, 2400, 3000))
        elif road.kind == "provincial":
            free, capacity = rng.uniform(50, 65), rng.choice((1200, 1800))
        else:
            free, capacity = rng.uniform(30, 45), rng.choice((600, 900, 1200))
        if urban and road.kind != "street":
            free *= 0.8  # town-centre speed limits
        fleet.append(
            SensorSpec(
                id=traffic_sensor_id(i + 1),
                name=f"{road.name} – {area.name} #{ordinal[area.id]}",
                area_id=area.id,
                lat=round(area.lat + north / KM_PER_DEG_LAT, 6),
                lon=round(area.lon + east / lon_scale, 6),
                free_flow_kmh=round(free, 1),
                capacity_vph=capacity,
                road=road.name,
                road_km=round(km, 3),
                neighbours=tuple(traffic_sensor_id(j + 1) for j in sorted(links[i])),
            )
        )
    return fleet
