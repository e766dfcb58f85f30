"""Tests of the synthetic demo city generator 演示城市生成器 (pure, no database).

The medium city takes a few seconds to build; its tests share one module-scoped fixture and
all carry ``medium`` in their name, so ``pytest -k "not medium"`` skips them.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date

import numpy as np
import pytest
import shapely
from shapely import MultiPolygon, Polygon

from shiyu.demo import SIZES, DemoCity, DemoGrid, DemoUnit, city_to_geojson, generate_city
from shiyu.demo.city import CITY_CODE, DEMO_PASSWORD, ROLES

MOBILE = re.compile(r"^1[3-9]\d{9}$")
ADMIN_CODE = re.compile(r"^\d{12}$")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small() -> DemoCity:
    return generate_city("small", seed=1)


@pytest.fixture(scope="module")
def medium() -> DemoCity:
    return generate_city("medium", seed=1)


# --------------------------------------------------------------------------- helpers


def by_kind(city: DemoCity, kind: str) -> list[DemoUnit]:
    return [u for u in city.units if u.kind == kind]


def children_of(city: DemoCity) -> dict[str, list[DemoUnit]]:
    out: dict[str, list[DemoUnit]] = defaultdict(list)
    for u in city.units:
        if u.parent_code is not None:
            out[u.parent_code].append(u)
    return out


def grids_by_village(city: DemoCity) -> dict[str, list[DemoGrid]]:
    out: dict[str, list[DemoGrid]] = defaultdict(list)
    for g in city.grids:
        out[g.village_code].append(g)
    return out


def assert_tiles(
    parent: Polygon | MultiPolygon, children: Sequence[Polygon | MultiPolygon], label: str
) -> None:
    """Children lie inside the parent, do not overlap each other and cover the parent."""
    assert children, f"{label}: no children"
    area = parent.area
    assert area > 0
    for child in children:
        assert shapely.is_valid(child), f"{label}: invalid child"
        assert shapely.difference(child, parent).area < 1e-9 * area, f"{label}: child sticks out of parent"
    arr = np.empty(len(children), dtype=object)
    arr[:] = list(children)
    left, right = shapely.STRtree(arr).query(arr, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i < j:
            overlap = shapely.intersection(arr[i], arr[j]).area
            assert overlap < 1e-12, f"{label}: siblings {i} and {j} overlap by {overlap}"
    union = shapely.union_all(arr)
    assert abs(union.area - area) < 1e-6 * area, f"{label}: children do not cover the parent"
    assert shapely.symmetric_difference(union, parent).area < 1e-6 * area, (
        f"{label}: union differs from parent"
    )


def id_check_digit(body17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident ID 居民身份证号 (GB 11643-1999)."""
    total = sum(int(ch) * (2 ** (17 - i) % 11) for i, ch in enumerate(body17))
    return "10X98765432"[total % 11]


def assert_valid_resident_id(rid: str) -> None:
    assert re.fullmatch(r"\d{17}[\dX]", rid), rid
    assert rid[17] == id_check_digit(rid[:17]), rid
    date(int(rid[6:10]), int(rid[10:12]), int(rid[12:14]))  # a real birth date


# --------------------------------------------------------------------------- sizes and counts


def test_unknown_size_raises() -> None:
    with pytest.raises(ValueError, match="huge"):
        generate_city("huge")


def test_sizes_table() -> None:
    assert set(SIZES) >= {"small", "medium"}


def test_small_counts(small: DemoCity) -> None:
    assert small.size == "small" and small.seed == 1
    assert len(by_kind(small, "city")) == 1
    assert len(by_kind(small, "district")) == 3
    assert len(by_kind(small, "town")) == 9
    assert len(by_kind(small, "village")) == 36
    assert 140 <= len(small.grids) <= 160
    per_village = Counter(g.village_code for g in small.grids)
    assert set(per_village) == {v.code for v in by_kind(small, "village")}
    assert all(3 <= n <= 6 for n in per_village.values())
    per_grid = Counter(h.grid_code for h in small.households)
    assert set(per_grid) == {g.code for g in small.grids}
    assert all(2 <= n <= 4 for n in per_grid.values())
    # 8 departments at the city and each district, 3 at each town
    assert len(small.departments) == 8 * (1 + 3) + 3 * 9


def test_medium_counts(medium: DemoCity) -> None:
    assert len(by_kind(medium, "district")) == 6
    assert len(by_kind(medium, "town")) == 60
    assert len(by_kind(medium, "village")) == 600
    assert 2850 <= len(medium.grids) <= 3150
    per_village = Counter(g.village_code for g in medium.grids)
    assert len(per_village) == 600
    assert all(4 <= n <= 6 for n in per_village.values())
    assert Counter(h.grid_code for h in medium.households) == Counter(g.code for g in medium.grids)
    assert len(medium.departments) == 8 * (1 + 6) + 3 * 60


# --------------------------------------------------------------------------- codes and names


def test_unit_codes(small: DemoCity) -> None:
    codes = [u.code for u in small.units]
    assert len(codes) == len(set(codes))
    assert all(ADMIN_CODE.match(c) for c in codes)
    units = {u.code: u for u in small.units}
    (city,) = by_kind(small, "city")
    assert city.code == CITY_CODE == "320100000000" and city.parent_code is None
    districts = by_kind(small, "district")
    assert [d.code for d in districts] == [f"3201{i:02d}000000" for i in range(2, 2 + len(districts))]
    for d in districts:
        assert d.parent_code == CITY_CODE
    for t in by_kind(small, "town"):
        parent = units[t.parent_code or ""]
        assert parent.kind == "district"
        assert t.code.startswith(parent.code[:6]) and t.code.endswith("000") and t.code[6:9] != "000"
    for v in by_kind(small, "village"):
        parent = units[v.parent_code or ""]
        assert parent.kind == "town"
        assert v.code.startswith(parent.code[:9]) and v.code[9:] != "000"
        seq = int(v.code[9:])
        if v.name.endswith("社区"):
            assert 1 <= seq <= 199, v
        else:
            assert v.name.endswith("村") and 200 <= seq <= 399, v
    # town sequence numbers are 001..0NN without gaps
    for d in districts:
        seqs = sorted(int(t.code[6:9]) for t in by_kind(small, "town") if t.parent_code == d.code)
        assert seqs == list(range(1, len(seqs) + 1))


def test_grid_codes(small: DemoCity) -> None:
    villages = {v.code: v for v in by_kind(small, "village")}
    assert len({g.code for g in small.grids}) == len(small.grids)
    for village_code, grids in grids_by_village(small).items():
        assert village_code in villages
        for g in grids:
            assert g.layer == "unified"
            assert len(g.code) == 15 and g.code.isdigit() and g.code.startswith(village_code)
        assert sorted(int(g.code[12:]) for g in grids) == list(range(1, len(grids) + 1))


def test_names(small: DemoCity) -> None:
    (city,) = by_kind(small, "city")
    assert city.name.endswith("市") and len(city.name) >= 2
    for parent_code, kids in children_of(small).items():
        names = [k.name for k in kids]
        assert len(names) == len(set(names)), f"duplicate names under {parent_code}"
    assert all(d.name.endswith("区") for d in by_kind(small, "district"))
    assert all(t.name.endswith(("街道", "镇")) for t in by_kind(small, "town"))
    assert all(v.name.endswith(("社区", "村")) for v in by_kind(small, "village"))
    villages = {v.code: v for v in by_kind(small, "village")}
    for g in small.grids:
        m = re.fullmatch(r"(.+)第(\d+)网格", g.name)
        assert m is not None, g.name
        assert m.group(1) == villages[g.village_code].name
        assert int(m.group(2)) == int(g.code[12:])
    # the Chinese names contain Chinese characters only
    assert all(re.fullmatch(r"[\u4e00-\u9fff]+", u.name) for u in small.units)


def test_departments(small: DemoCity) -> None:
    units = {u.code: u for u in small.units}
    codes = [d.code for d in small.departments]
    assert len(codes) == len(set(codes))
    full = {"GA", "CG", "SC", "ZJ", "SF", "MZ", "YJ", "HB"}
    by_parent: dict[str, set[str]] = defaultdict(set)
    for d in small.departments:
        m = re.fullmatch(r"(\d{12})-([A-Z]{2})", d.code)
        assert m is not None, d.code
        assert m.group(1) == d.parent_code and d.parent_code in units
        assert d.name and re.fullmatch(r"[\u4e00-\u9fff]+", d.name)
        by_parent[d.parent_code].add(m.group(2))
    expected_category = {
        "GA": "public_security",
        "CG": "urban_management",
        "SC": "market_regulation",
        "ZJ": "housing",
        "SF": "justice",
        "MZ": "civil_affairs",
        "YJ": "emergency",
        "HB": "environment",
    }
    for d in small.departments:
        assert d.category == expected_category[d.code[-2:]]
    for u in small.units:
        if u.kind in ("city", "district"):
            assert by_parent[u.code] == full, u.code
        elif u.kind == "town":
            assert by_parent[u.code] == {"GA", "CG", "SF"}, u.code
        else:
            assert u.code not in by_parent
    town_depts = {d.code: d for d in small.departments if units[d.parent_code].kind == "town"}
    assert all(d.name.endswith("派出所") for c, d in town_depts.items() if c.endswith("-GA"))
    assert all(d.name.endswith("司法所") for c, d in town_depts.items() if c.endswith("-SF"))
    assert all(d.name.endswith("公安局") for d in small.departments if d.code == f"{CITY_CODE}-GA")


# --------------------------------------------------------------------------- geometry


def test_small_geometry_valid_and_single_part(small: DemoCity) -> None:
    for u in small.units:
        assert shapely.is_valid(u.polygon), u.code
        assert isinstance(u.polygon, Polygon), u.code  # no MultiPolygon needed for this seed
    for g in small.grids + small.layer_grids["police"] + small.layer_grids["urban"]:
        assert isinstance(g.polygon, Polygon), g.code
        assert shapely.is_valid(g.polygon) and g.polygon.area > 0, g.code


def test_small_extent_and_outline(small: DemoCity) -> None:
    (city,) = by_kind(small, "city")
    minx, miny, maxx, maxy = city.polygon.bounds
    assert abs((minx + maxx) / 2 - 118.80) < 0.05 and abs((miny + maxy) / 2 - 32.05) < 0.05
    assert 0.8 < maxx - minx < 1.0 and 0.6 < maxy - miny < 0.8
    assert isinstance(city.polygon, Polygon)
    assert len(city.polygon.exterior.coords) >= 65  # irregular outline, not a box
    assert city.polygon.area < 0.95 * shapely.envelope(city.polygon).area


def test_small_coordinates_rounded(small: DemoCity) -> None:
    geoms = [u.polygon for u in small.units] + [g.polygon for g in small.grids]
    coords = shapely.get_coordinates(np.array(geoms, dtype=object))
    assert np.array_equal(coords, np.round(coords, 7))


def test_small_grids_irregular(small: DemoCity) -> None:
    vertices = [len(g.polygon.exterior.coords) - 1 for g in small.grids]
    assert min(vertices) >= 3 and np.mean(vertices) > 6
    fill = [g.polygon.area / shapely.envelope(g.polygon).area for g in small.grids]
    assert sum(f < 0.9 for f in fill) > 0.8 * len(fill)  # not axis-aligned rectangles


def test_small_tiling_all_levels(small: DemoCity) -> None:
    units = {u.code: u for u in small.units}
    for parent_code, kids in children_of(small).items():
        assert_tiles(units[parent_code].polygon, [k.polygon for k in kids], parent_code)
    for village_code, grids in grids_by_village(small).items():
        assert_tiles(units[village_code].polygon, [g.polygon for g in grids], village_code)
    (city,) = by_kind(small, "city")
    assert_tiles(city.polygon, [g.polygon for g in small.grids], "all grids")


def test_small_other_layers_map_onto_unified(small: DemoCity) -> None:
    units = {u.code: u for u in small.units}
    (city,) = by_kind(small, "city")
    assert set(small.layer_grids) == {"police", "urban"}
    for layer, prefix in (("police", "P"), ("urban", "U")):
        layer_grids = small.layer_grids[layer]
        assert layer_grids
        assert len({g.code for g in layer_grids}) == len(layer_grids)
        for g in layer_grids:
            assert g.layer == layer and g.code.startswith(prefix) and g.village_code in units
        assert_tiles(city.polygon, [g.polygon for g in layer_grids], layer)
        # 多格合一: every unified grid lies inside exactly one grid of the layer
        arr = np.empty(len(layer_grids), dtype=object)
        arr[:] = [g.polygon for g in layer_grids]
        tree = shapely.STRtree(arr)
        for grid in small.grids:
            hits = [
                i
                for i in tree.query(grid.polygon, predicate="intersects").tolist()
                if shapely.intersection(arr[i], grid.polygon).area > 1e-9 * grid.polygon.area
            ]
            assert len(hits) == 1, (layer, grid.code, hits)
    for village_code in grids_by_village(small):
        halves = [g.polygon for g in small.layer_grids["urban"] if g.village_code == village_code]
        assert len(halves) == 2
        assert_tiles(units[village_code].polygon, halves, f"urban {village_code}")


def test_medium_tiling_sample(medium: DemoCity) -> None:
    units = {u.code: u for u in medium.units}
    kids = children_of(medium)
    assert_tiles(units[CITY_CODE].polygon, [d.polygon for d in kids[CITY_CODE]], "city")
    districts = by_kind(medium, "district")
    for d in districts[:2]:
        assert_tiles(d.polygon, [t.polygon for t in kids[d.code]], d.code)
    towns = by_kind(medium, "town")
    for t in towns[::25]:
        assert_tiles(t.polygon, [v.polygon for v in kids[t.code]], t.code)
    grids = grids_by_village(medium)
    for v in by_kind(medium, "village")[::30]:  # 20 villages
        assert_tiles(v.polygon, [g.polygon for g in grids[v.code]], v.code)
    assert all(isinstance(g.polygon, Polygon) for g in medium.grids)
    assert np.all(shapely.is_valid(np.array([g.polygon for g in medium.grids], dtype=object)))


def test_medium_extent_and_irregular_grids(medium: DemoCity) -> None:
    minx, miny, maxx, maxy = medium.units[0].polygon.bounds
    assert abs((minx + maxx) / 2 - 118.80) < 0.1 and abs((miny + maxy) / 2 - 32.05) < 0.1
    assert 1.45 < maxx - minx < 1.75 and 1.05 < maxy - miny < 1.35
    fill = [g.polygon.area / shapely.envelope(g.polygon).area for g in medium.grids]
    assert np.mean(fill) < 0.85
    assert np.mean([len(g.polygon.exterior.coords) for g in medium.grids]) > 8


# --------------------------------------------------------------------------- determinism


def _fingerprint(city: DemoCity) -> tuple[object, ...]:
    return (
        [(u.code, u.name, u.parent_code, shapely.to_wkb(u.polygon)) for u in city.units],
        [(g.code, g.name, shapely.to_wkb(g.polygon)) for g in city.grids],
        {k: [(g.code, shapely.to_wkb(g.polygon)) for g in v] for k, v in city.layer_grids.items()},
        city.departments,
        city.households,
        city.users,
    )


def test_deterministic_for_a_seed(small: DemoCity) -> None:
    again = generate_city("small", seed=1)
    assert _fingerprint(again) == _fingerprint(small)


def test_different_seed_differs(small: DemoCity) -> None:
    other = generate_city("small", seed=2)
    assert shapely.to_wkb(other.units[0].polygon) != shapely.to_wkb(small.units[0].polygon)
    assert [shapely.to_wkb(g.polygon) for g in other.grids[:10]] != [
        shapely.to_wkb(g.polygon) for g in small.grids[:10]
    ]
    assert [h.lead_resident_id for h in other.households[:10]] != [
        h.lead_resident_id for h in small.households[:10]
    ]
    # the other seed still satisfies the tiling invariants
    units = {u.code: u for u in other.units}
    for village_code, grids in grids_by_village(other).items():
        assert_tiles(units[village_code].polygon, [g.polygon for g in grids], village_code)


# --------------------------------------------------------------------------- people


def test_household_groups(small: DemoCity) -> None:
    grids = {g.code for g in small.grids}
    assert len({h.code for h in small.households}) == len(small.households)
    for h in small.households:
        assert h.grid_code in grids
        assert re.fullmatch(re.escape(h.grid_code) + r"-\d{2}", h.code), h.code
        assert MOBILE.match(h.lead_phone), h.lead_phone
        assert_valid_resident_id(h.lead_resident_id)
        assert h.lead_resident_id[:6] == h.grid_code[:6]  # registered in the grid's district
        assert 2 <= len(h.lead_name) <= 4 and re.fullmatch(r"[\u4e00-\u9fff]+", h.lead_name)
        assert 5 <= h.households <= 15
        assert "十联户" in h.name


def test_id_check_digit_helper_is_correct() -> None:
    # well-known sample from GB 11643-1999
    assert id_check_digit("11010519491231002") == "X"
    assert id_check_digit("44052418800101001") == "4"


def test_users_basic(small: DemoCity) -> None:
    unit_codes = {u.code for u in small.units} | {d.code for d in small.departments}
    names = [u.username for u in small.users]
    assert len(names) == len(set(names))
    assert {u.role for u in small.users} == set(ROLES)
    for u in small.users:
        assert re.fullmatch(r"[a-z0-9_]+", u.username), u.username
        assert u.password == DEMO_PASSWORD == "Shiyu@2026"
        assert u.role in ROLES
        assert u.unit_code in unit_codes, u
        assert MOBILE.match(u.phone) and u.display_name
    admins = [u for u in small.users if u.role == "admin"]
    assert [(u.username, u.unit_code) for u in admins] == [("admin", CITY_CODE)]


def _has(city: DemoCity, role: str, unit_code: str) -> bool:
    return any(u.role == role and u.unit_code == unit_code for u in city.users)


def _check_user_coverage(city: DemoCity, towns_per_district: int | None) -> None:
    districts = by_kind(city, "district")
    kids = children_of(city)
    for role in ("dispatcher", "leader", "mediator", "auditor"):
        assert _has(city, role, CITY_CODE), role
    for abbr in ("GA", "CG"):
        assert _has(city, "department_handler", f"{CITY_CODE}-{abbr}")
    for i, d in enumerate(districts):
        assert _has(city, "dispatcher", d.code) and _has(city, "leader", d.code), d.code
        assert _has(city, "mediator", d.code), d.code
        for abbr in ("GA", "CG"):
            assert _has(city, "department_handler", f"{d.code}-{abbr}"), d.code
        towns = kids[d.code] if i == 0 or towns_per_district is None else kids[d.code][:towns_per_district]
        for t in towns:
            assert _has(city, "dispatcher", t.code) and _has(city, "leader", t.code), t.code
    first = districts[0]
    assert _has(city, "auditor", first.code)
    first_towns = kids[first.code]
    assert len(first_towns) >= 2
    for t in first_towns:  # every town of the first district: dispatcher + grid worker + handler + mediator
        village_codes = {v.code for v in kids[t.code]}
        assert _has(city, "dispatcher", t.code)
        assert any(u.role == "grid_worker" and u.unit_code in village_codes for u in city.users), t.code
        assert _has(city, "department_handler", f"{t.code}-GA")
        assert _has(city, "mediator", f"{t.code}-SF")


def test_small_user_coverage(small: DemoCity) -> None:
    _check_user_coverage(small, None)
    user = {u.username: u for u in small.users}
    first_town = by_kind(small, "town")[0]
    assert user[f"dispatcher_{first_town.code}"].unit_code == first_town.code
    assert user["auditor_city"].role == "auditor"


def test_medium_user_coverage(medium: DemoCity) -> None:
    _check_user_coverage(medium, 3)
    assert all(MOBILE.match(u.phone) for u in medium.users)
    assert all(MOBILE.match(h.lead_phone) for h in medium.households)
    for h in medium.households[::50]:
        assert_valid_resident_id(h.lead_resident_id)


# --------------------------------------------------------------------------- GeoJSON


def test_geojson(small: DemoCity) -> None:
    fc = city_to_geojson(small)
    assert fc["type"] == "FeatureCollection"
    features = fc["features"]
    assert len(features) == len(small.units) + len(small.grids)
    seen: set[str] = set()
    kinds: Counter[str] = Counter()
    for f in features:
        props = f["properties"]
        assert set(props) == {"code", "name", "kind", "parent"}
        kinds[props["kind"]] += 1
        if props["kind"] == "city":
            assert props["parent"] == ""
        else:
            assert props["parent"] in seen, f"{props['code']} comes before its parent {props['parent']}"
        seen.add(props["code"])
        geom = shapely.geometry.shape(f["geometry"])
        assert geom.geom_type in ("Polygon", "MultiPolygon") and geom.is_valid
    assert kinds == Counter({"city": 1, "district": 3, "town": 9, "village": 36, "grid": len(small.grids)})
    grid_feature = next(f for f in features if f["properties"]["kind"] == "grid")
    grid = next(g for g in small.grids if g.code == grid_feature["properties"]["code"])
    assert grid_feature["properties"]["parent"] == grid.village_code
    assert shapely.geometry.shape(grid_feature["geometry"]).equals(grid.polygon)
    json.loads(json.dumps(fc, ensure_ascii=False))  # serialisable

    no_grids = city_to_geojson(small, include_grids=False)
    assert len(no_grids["features"]) == len(small.units)
    assert all(f["properties"]["kind"] != "grid" for f in no_grids["features"])
