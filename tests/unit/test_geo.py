from pathlib import Path

import pytest
import yaml

from ioc.config import PROJECT_ROOT
from ioc.domain.fleet import make_fleet
from ioc.domain.geo import GeographyError, parse_geography

DEMO = PROJECT_ROOT / "config" / "areas" / "binh-phuoc.yaml"
DISTRICTS = {
    "Đồng Xoài",
    "Bình Long",
    "Phước Long",
    "Chơn Thành",
    "Hớn Quản",
    "Lộc Ninh",
    "Bù Đốp",
    "Bù Gia Mập",
    "Bù Đăng",
    "Đồng Phú",
    "Phú Riềng",
}


def demo() -> dict[str, object]:
    return yaml.safe_load(DEMO.read_text(encoding="utf-8"))


def test_demo_province_has_its_eleven_districts() -> None:
    geo = parse_geography(demo())
    assert geo.province_id == "VN-58"
    assert geo.name == "Bình Phước"
    assert geo.timezone == "Asia/Ho_Chi_Minh"
    assert {a.name for a in geo.areas if a.parent_id == "VN-58"} == DISTRICTS
    assert geo.province_geojson and (PROJECT_ROOT / geo.province_geojson).is_file()


def test_tree_of_any_depth() -> None:
    doc = {
        "areas": [
            {
                "id": "p",
                "name": "P",
                "center": [11, 106],
                "children": [
                    {
                        "id": "d",
                        "name": "D",
                        "center": [11, 106],
                        "children": [
                            {
                                "id": "c",
                                "name": "C",
                                "center": [11, 106],
                                "children": [{"id": "v", "name": "V", "center": [11, 106]}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    geo = parse_geography(doc)
    assert [(a.id, a.parent_id, a.depth) for a in geo.areas] == [
        ("p", None, 0),
        ("d", "p", 1),
        ("c", "d", 2),
        ("v", "c", 3),
    ]
    assert [a.id for a in geo.leaves()] == ["v"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "top-level 'areas'"),
        ({"areas": [{"id": "p", "name": "P"}]}, "missing 'center'"),
        ({"areas": [{"id": "p", "name": "P", "center": [200, 1]}]}, "latitude"),
        (
            {
                "areas": [
                    {
                        "id": "p",
                        "name": "P",
                        "center": [1, 1],
                        "children": [{"id": "p", "name": "again", "center": [1, 1]}],
                    }
                ]
            },
            "duplicate area id 'p'",
        ),
    ],
)
def test_bad_geography_names_the_problem(doc: dict[str, object], message: str) -> None:
    with pytest.raises(GeographyError, match=message):
        parse_geography(doc)


def test_fleet_is_deterministic_and_spread_over_districts() -> None:
    geo = parse_geography(demo())
    a = make_fleet(geo, 300, seed=58)
    b = make_fleet(geo, 300, seed=58)
    assert a == b
    assert make_fleet(geo, 300, seed=59) != a
    assert len({s.id for s in a}) == 300
    assert {s.area_id for s in a} == {x.id for x in geo.leaves()}
    for s in a:
        area = geo.by_id()[s.area_id]
        assert abs(s.lat - area.lat) < 0.2 and abs(s.lon - area.lon) < 0.2


def test_config_files_parse() -> None:
    from ioc.domain.rules import parse_rules

    rules = parse_rules(yaml.safe_load(Path(PROJECT_ROOT / "config" / "rules.yaml").read_text()))
    assert any(r.id == "traffic.congestion" for r in rules)
