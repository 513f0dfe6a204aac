"""Geography is configuration: areas form a tree of any depth, loaded from a deployment file.

This module turns the parsed file (plain dicts) into validated, flattened areas. Reading the file
is the caller's job (``ioc.db.seed``): no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class GeographyError(ValueError):
    """The areas file is wrong; the message says where."""


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    parent_id: str | None
    name: str
    name_en: str
    level: str
    lat: float
    lon: float
    radius_km: float
    depth: int


@dataclass(frozen=True, slots=True)
class Geography:
    province_id: str
    name: str
    timezone: str
    province_geojson: str | None
    areas: tuple[Area, ...]

    def leaves(self) -> list[Area]:
        parents = {a.parent_id for a in self.areas}
        return [a for a in self.areas if a.id not in parents]

    def by_id(self) -> dict[str, Area]:
        return {a.id: a for a in self.areas}


def _walk(node: Mapping[str, Any], parent: str | None, depth: int, where: str) -> Iterator[Area]:
    if not isinstance(node, Mapping):
        raise GeographyError(f"{where}: an area must be a mapping")
    for key in ("id", "name", "center"):
        if key not in node:
            raise GeographyError(f"{where}: area is missing '{key}'")
    area_id = str(node["id"])
    here = f"{where}/{area_id}"
    center = node["center"]
    if (
        not isinstance(center, list | tuple)
        or len(center) != 2
        or not all(isinstance(c, int | float) for c in center)
    ):
        raise GeographyError(f"{here}: center must be [lat, lon]")
    lat, lon = float(center[0]), float(center[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise GeographyError(f"{here}: center {center} is not a latitude/longitude")
    yield Area(
        id=area_id,
        parent_id=parent,
        name=str(node["name"]),
        name_en=str(node.get("name_en", node["name"])),
        level=str(node.get("level", "area")),
        lat=lat,
        lon=lon,
        radius_km=float(node.get("radius_km", 5.0)),
        depth=depth,
    )
    children = node.get("children") or []
    if not isinstance(children, list):
        raise GeographyError(f"{here}: children must be a list")
    for child in children:
        yield from _walk(child, area_id, depth + 1, here)


def parse_geography(doc: Mapping[str, Any]) -> Geography:
    """Validate a parsed areas file (see ``config/areas/*.yaml``)."""
    roots = doc.get("areas") if isinstance(doc, Mapping) else None
    if not isinstance(roots, list) or len(roots) != 1:
        raise GeographyError(
            "expected a top-level 'areas' list holding one root area (the province)"
        )
    areas = tuple(_walk(roots[0], None, 0, "areas"))
    seen: set[str] = set()
    for area in areas:
        if area.id in seen:
            raise GeographyError(f"areas file: duplicate area id '{area.id}'")
        seen.add(area.id)
    root = areas[0]
    return Geography(
        province_id=root.id,
        name=root.name,
        timezone=str(doc.get("timezone", "Asia/Ho_Chi_Minh")),
        province_geojson=doc.get("province_geojson"),
        areas=areas,
    )
