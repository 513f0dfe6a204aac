"""Load a deployment's geography and demo devices into the database (``ioc seed``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import yaml

from ioc.domain.fleet import make_fleet
from ioc.domain.geo import Geography, GeographyError, parse_geography


def load_geography(path: Path) -> Geography:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GeographyError(f"{path}: no such areas file (set IOC_AREAS_FILE)") from None
    except yaml.YAMLError as exc:
        raise GeographyError(f"{path}: not valid YAML ({exc})") from None
    try:
        return parse_geography(doc)
    except GeographyError as exc:
        raise GeographyError(f"{path}: {exc}") from None


async def seed(
    conn: psycopg.AsyncConnection[Any], geo: Geography, *, sensors: int, seed_value: int
) -> tuple[int, int]:
    """Upsert areas (parents first) and the deterministic demo sensors. Idempotent."""
    async with conn.cursor() as cur:
        for a in sorted(geo.areas, key=lambda a: a.depth):
            await cur.execute(
                """INSERT INTO areas (id, parent_id, name, name_en, level, lat, lon, depth)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id,
                     name = excluded.name, name_en = excluded.name_en, level = excluded.level,
                     lat = excluded.lat, lon = excluded.lon, depth = excluded.depth,
                     updated_at = now()""",
                (a.id, a.parent_id, a.name, a.name_en, a.level, a.lat, a.lon, a.depth),
            )
        fleet = make_fleet(geo, sensors, seed_value)
        await cur.executemany(
            """INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata)
               VALUES (%s, 'traffic_sensor', %s, %s, %s, %s,
                       jsonb_build_object('free_flow_kmh', %s::real, 'capacity_vph', %s::int))
               ON CONFLICT (id) DO UPDATE SET name = excluded.name, area_id = excluded.area_id,
                 lat = excluded.lat, lon = excluded.lon, metadata = excluded.metadata""",
            [
                (s.id, s.name, s.area_id, s.lat, s.lon, s.free_flow_kmh, s.capacity_vph)
                for s in fleet
            ],
        )
        # One site per leaf area: the link/power feed its devices depend on (root cause).
        await cur.executemany(
            """INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata)
               VALUES (%s, 'site', %s, %s, %s, %s, '{"inferred": true}'::jsonb)
               ON CONFLICT (id) DO UPDATE SET name = excluded.name, area_id = excluded.area_id,
                 lat = excluded.lat, lon = excluded.lon""",
            [
                (site_id(a.id), f"Đường truyền – {a.name}", a.id, a.lat + 0.004, a.lon + 0.004)
                for a in geo.leaves()
            ],
        )
    await link_sites(conn)
    return len(geo.areas), len(fleet)


async def link_sites(conn: psycopg.AsyncConnection[Any]) -> None:
    """Devices without a parent depend on their area's site (for root-cause grouping)."""
    await conn.execute(
        """UPDATE devices d SET parent_id = 'site-' || d.area_id
           WHERE d.kind IN ('traffic_sensor', 'camera') AND d.parent_id IS NULL
             AND EXISTS (SELECT 1 FROM devices s WHERE s.id = 'site-' || d.area_id)"""
    )


def site_id(area_id: str) -> str:
    return f"site-{area_id}"
