"""GeoJSON import 导入 and point location 定位, at the service level, on a real database.

The hand-made world: city 320100000000 > district 320102000000 > town 320102001000 >
villages 320102001001 (lon 118.00-118.10) and 320102001002 (lon 118.10-118.20), each
tiled by two unified grids; latitudes 32.00-32.10.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import shapely
from sqlalchemy import func, select

from shiyu.demo.city import city_to_geojson, generate_city
from shiyu.domains.geo import service as geo
from shiyu.domains.geo.models import Grid, GridLink, UnitBoundary
from shiyu.kit.db import Database
from shiyu.kit.errors import Invalid
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit

CITY, DISTRICT, TOWN = "320100000000", "320102000000", "320102001000"
V1, V2 = "320102001001", "320102001002"
G1, G2, G3, G4 = V1 + "001", V1 + "002", V2 + "001", V2 + "002"
POLICE = "P320102001001"

# Feature indexes in base_fc().
I_CITY, I_DISTRICT, I_TOWN, I_V1, I_V2, I_G1, I_G2, I_G3, I_G4 = range(9)
N_BASE = 9


def box(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(
    code: Any, name: Any, kind: Any, parent: Any, geometry: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name, "kind": kind, "parent": parent},
        "geometry": geometry,
    }


def base_fc() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            feature(CITY, "测试市", "city", ""),
            feature(DISTRICT, "玄湖区", "district", CITY),
            feature(TOWN, "梅园街道", "town", DISTRICT, box(118.00, 32.00, 118.20, 32.10)),
            feature(V1, "桂园社区", "village", TOWN, box(118.00, 32.00, 118.10, 32.10)),
            feature(V2, "兰桥村", "village", TOWN, box(118.10, 32.00, 118.20, 32.10)),
            feature(G1, "桂园第一网格", "grid", V1, box(118.00, 32.00, 118.05, 32.10)),
            feature(G2, "桂园第二网格", "grid", V1, box(118.05, 32.00, 118.10, 32.10)),
            feature(G3, "兰桥第一网格", "grid", V2, box(118.10, 32.00, 118.15, 32.10)),
            feature(G4, "兰桥第二网格", "grid", V2, box(118.15, 32.00, 118.20, 32.10)),
        ],
    }


def police_fc() -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            feature(POLICE, "梅园派出所第1警务区", "grid", V1, box(118.00, 32.00, 118.10, 32.10)),
        ],
    }


def system() -> Principal:
    return Principal.system("test-import")


def run_import(db: Database, data: Any, layer: str = "unified") -> Any:
    with db.unit_of_work() as session:
        return geo.import_geojson(session, system(), data, layer=layer)


def snapshot(db: Database) -> dict[str, Any]:
    """Everything an import may write: row counts, the audit head, names and grid geometry."""
    with db.unit_of_work(write=False) as s:

        def count(model: Any) -> int:
            return s.execute(select(func.count()).select_from(model)).scalar_one()

        return {
            "units": count(Unit),
            "grids": count(Grid),
            "boundaries": count(UnitBoundary),
            "links": count(GridLink),
            "audit_rows": count(AuditEntry),
            "audit_head": audit.count(s),
            "revision": geo.revision(s),
            "unit_names": dict(s.execute(select(Unit.code, Unit.name)).all()),
            "grid_rows": {
                c: (n, u, bytes(g))
                for c, n, u, g in s.execute(select(Grid.code, Grid.name, Grid.unit_code, Grid.geom)).all()
            },
        }


def audit_actions_after(db: Database, seq: int) -> list[tuple[str, str | None]]:
    with db.unit_of_work(write=False) as s:
        return [
            tuple(r)
            for r in s.execute(  # type: ignore[misc]
                select(AuditEntry.action, AuditEntry.object_id)
                .where(AuditEntry.seq > seq)
                .order_by(AuditEntry.seq)
            ).all()
        ]


def locate(db: Database, lon: float, lat: float) -> Any:
    with db.unit_of_work(write=False) as s:
        found = geo.locate_point(s, lon, lat)
    return None if found is None else found[0]


@pytest.fixture
def world(empty_db: Database) -> Database:
    """empty_db with the hand-made city imported."""
    run_import(empty_db, base_fc())
    return empty_db


# --------------------------------------------------------------------------- happy path


def test_import_creates_everything(empty_db: Database) -> None:
    report = run_import(empty_db, base_fc())
    assert (report.created, report.updated, report.unchanged, report.features) == (N_BASE, 0, 0, N_BASE)
    snap = snapshot(empty_db)
    assert snap["units"] == 5
    assert snap["grids"] == 4
    assert snap["boundaries"] == 3  # the town and both villages carry a polygon
    assert snap["links"] == 0
    assert snap["audit_rows"] == snap["audit_head"] > 0
    assert snap["revision"] == 1
    with empty_db.unit_of_work(write=False) as s:
        rows = {u.code: u for u in s.execute(select(Unit)).scalars()}
        grids = {g.code: g for g in s.execute(select(Grid)).scalars()}
        actions = [a for a, _ in audit_actions_after(empty_db, 0)]
    assert rows[CITY].parent_code is None and rows[CITY].kind == "city" and rows[CITY].level == 1
    assert rows[V2].path == f"/{CITY}/{DISTRICT}/{TOWN}/{V2}/"
    assert rows[V2].level == 4 and rows[V2].parent_code == TOWN
    assert grids[G3].unit_code == V2 and grids[G3].layer_code == "unified"
    assert grids[G3].scope_path == rows[V2].path
    assert (grids[G3].min_lon, grids[G3].min_lat, grids[G3].max_lon, grids[G3].max_lat) == pytest.approx(
        (118.10, 32.00, 118.15, 32.10)
    )
    assert shapely.from_wkb(bytes(grids[G3].geom)).equals(shapely.box(118.10, 32.00, 118.15, 32.10))
    assert actions.count("unit.create") == 5
    assert actions.count("grid.create") == 4


def test_reimport_changes_nothing(world: Database) -> None:
    before = snapshot(world)
    report = run_import(world, base_fc())
    assert (report.created, report.updated, report.unchanged, report.features) == (0, 0, N_BASE, N_BASE)
    assert snapshot(world) == before


def test_import_is_independent_of_feature_order(empty_db: Database) -> None:
    """Children may come before their parents in the file."""
    fc = base_fc()
    fc["features"].reverse()
    report = run_import(empty_db, fc)
    assert report.created == N_BASE
    assert run_import(empty_db, base_fc()).unchanged == N_BASE


def test_rename_grid_updates_one_feature_and_one_audit_entry(world: Database) -> None:
    before = snapshot(world)
    fc = base_fc()
    fc["features"][I_G2]["properties"]["name"] = "桂园第二网格(新)"
    report = run_import(world, fc)
    assert (report.created, report.updated, report.unchanged) == (0, 1, N_BASE - 1)
    after = snapshot(world)
    assert after["audit_head"] == before["audit_head"] + 1
    assert audit_actions_after(world, before["audit_head"]) == [("grid.update", G2)]
    assert after["grid_rows"][G2][0] == "桂园第二网格(新)"
    assert {k: v for k, v in after["grid_rows"].items() if k != G2} == {
        k: v for k, v in before["grid_rows"].items() if k != G2
    }
    assert after["revision"] == before["revision"] + 1
    # and importing the renamed file again is a no-op
    assert run_import(world, fc).unchanged == N_BASE
    assert snapshot(world)["audit_head"] == after["audit_head"]


def test_rename_unit_updates_one_feature_and_one_audit_entry(world: Database) -> None:
    before = snapshot(world)
    fc = base_fc()
    fc["features"][I_V1]["properties"]["name"] = "桂园新村"
    report = run_import(world, fc)
    assert (report.created, report.updated, report.unchanged) == (0, 1, N_BASE - 1)
    after = snapshot(world)
    assert audit_actions_after(world, before["audit_head"]) == [("unit.update", V1)]
    assert after["unit_names"][V1] == "桂园新村"
    assert {k: v for k, v in after["unit_names"].items() if k != V1} == {
        k: v for k, v in before["unit_names"].items() if k != V1
    }


def test_boundary_change_counts_as_one_update(world: Database) -> None:
    """A unit whose boundary changes (alone, or together with its name) is one updated feature."""
    fc = base_fc()
    fc["features"][I_V1]["geometry"] = box(117.99, 32.00, 118.10, 32.10)
    report = run_import(world, fc)
    assert (report.created, report.updated, report.unchanged) == (0, 1, N_BASE - 1)
    fc["features"][I_V1]["geometry"] = box(117.98, 32.00, 118.10, 32.10)
    fc["features"][I_V1]["properties"]["name"] = "桂园新村"
    report = run_import(world, fc)
    assert (report.created, report.updated, report.unchanged) == (0, 1, N_BASE - 1)


def test_import_demo_city_twice(empty_db: Database) -> None:
    fc = city_to_geojson(generate_city("small", seed=1))
    n = len(fc["features"])
    first = run_import(empty_db, fc)
    assert (first.created, first.updated, first.unchanged, first.features) == (n, 0, 0, n)
    before = snapshot(empty_db)
    assert before["grids"] == sum(1 for f in fc["features"] if f["properties"]["kind"] == "grid")
    second = run_import(empty_db, fc)
    assert (second.created, second.updated, second.unchanged, second.features) == (0, 0, n, n)
    assert snapshot(empty_db) == before


# --------------------------------------------------------------------------- errors


def append(*features: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(fc: dict[str, Any]) -> None:
        fc["features"].extend(copy.deepcopy(list(features)))

    return mutate


def set_prop(index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(fc: dict[str, Any]) -> None:
        if value is _DELETE:
            del fc["features"][index]["properties"][key]
        else:
            fc["features"][index]["properties"][key] = value

    return mutate


def set_geometry(index: int, geometry: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(fc: dict[str, Any]) -> None:
        fc["features"][index]["geometry"] = geometry

    return mutate


def duplicate(index: int) -> Callable[[dict[str, Any]], None]:
    def mutate(fc: dict[str, Any]) -> None:
        fc["features"].append(copy.deepcopy(fc["features"][index]))

    return mutate


_DELETE = object()
BOW_TIE = {
    "type": "Polygon",
    "coordinates": [[[118.00, 32.00], [118.05, 32.10], [118.05, 32.00], [118.00, 32.10], [118.00, 32.00]]],
}

# (id, mutation of base_fc, expected error indexes, words expected in the reason)
ERROR_CASES: list[tuple[str, Callable[[dict[str, Any]], None], set[int], str]] = [
    ("missing-code", set_prop(I_V1, "code", _DELETE), {I_V1}, "code"),
    ("blank-code", set_prop(I_G3, "code", "  "), {I_G3}, "code"),
    ("missing-name", set_prop(I_G2, "name", _DELETE), {I_G2}, "name"),
    ("empty-name", set_prop(I_TOWN, "name", ""), {I_TOWN}, "name"),
    ("unknown-kind", set_prop(I_V2, "kind", "county"), {I_V2}, "kind"),
    ("parent-not-a-string", set_prop(I_V2, "parent", 320102001000), {I_V2}, "parent"),
    (
        "unknown-parent-unit",
        append(feature("320102001003", "新村", "village", "320102002000")),
        {N_BASE},
        "unknown parent",
    ),
    (
        "unknown-parent-grid",
        append(feature(V2 + "009", "网格", "grid", "320102001009", box(118.0, 32.2, 118.1, 32.3))),
        {N_BASE},
        "unknown parent",
    ),
    (
        "town-under-wrong-district",
        append(feature("320103001000", "错镇", "town", DISTRICT)),
        {N_BASE},
        "prefix",
    ),
    ("eleven-digit-code", append(feature("32010200100", "短码村", "village", TOWN)), {N_BASE}, "12-digit"),
    (
        "code-of-another-level",
        append(feature("320102002000", "镇码村", "village", TOWN)),
        {N_BASE},
        "not a village",
    ),
    (
        "village-under-district",
        append(feature("320102000003", "越级村", "village", DISTRICT)),
        {N_BASE},
        "village",
    ),
    (
        "bad-grid-code",
        append(feature("g-1", "小写网格", "grid", V2, box(118.0, 32.2, 118.1, 32.3))),
        {N_BASE},
        "grid code",
    ),
    ("duplicate-code", duplicate(I_G1), {N_BASE}, "twice"),
    ("grid-without-geometry", set_geometry(I_G4, None), {I_G4}, "geometry"),
    ("bow-tie-polygon", set_geometry(I_G1, BOW_TIE), {I_G1}, "invalid"),
    (
        "point-geometry",
        set_geometry(I_G2, {"type": "Point", "coordinates": [118.07, 32.05]}),
        {I_G2},
        "Polygon",
    ),
    (
        "linestring-unit-geometry",
        set_geometry(I_V2, {"type": "LineString", "coordinates": [[118.1, 32.0], [118.2, 32.1]]}),
        {I_V2},
        "Polygon",
    ),
    (
        "malformed-geometry",
        set_geometry(I_G3, {"type": "Polygon", "coordinates": [[[118.1, 32.0]]]}),
        {I_G3},
        "geometry",
    ),
    ("geometry-not-an-object", set_geometry(I_G3, "POLYGON((0 0,1 0,1 1,0 0))"), {I_G3}, "geometry"),
    ("longitude-out-of-range", set_geometry(I_G4, box(118.15, 32.00, 181.0, 32.10)), {I_G4}, "longitude"),
    ("latitude-out-of-range", set_geometry(I_G4, box(118.15, 32.00, 118.20, 91.0)), {I_G4}, "latitude"),
    ("projected-coordinates", set_geometry(I_V1, box(660000, 3550000, 670000, 3560000)), {I_V1}, "longitude"),
    (
        "grid-outside-its-village",
        append(feature(V1 + "003", "飞地网格", "grid", V1, box(118.12, 32.02, 118.14, 32.04))),
        {N_BASE},
        "outside",
    ),
    ("grid-partly-outside-village", set_geometry(I_G2, box(118.05, 32.00, 118.11, 32.10)), {I_G2}, "outside"),
    (
        "unified-grid-in-a-town",
        append(feature("320102001000001", "镇级网格", "grid", TOWN, box(118.0, 32.2, 118.1, 32.3))),
        {N_BASE},
        "village",
    ),
    (
        "grid-code-is-a-unit-code",
        append(feature(V2, "同码", "grid", V2, box(118.0, 32.2, 118.1, 32.3))),
        {N_BASE},
        "twice",
    ),
]


def assert_rejected(
    db: Database, data: Any, indexes: set[int | None], words: str, layer: str = "unified"
) -> None:
    before = snapshot(db)
    with pytest.raises(Invalid) as info:
        run_import(db, data, layer=layer)
    errors = info.value.errors
    assert errors, "Invalid must list the bad features"
    assert {e["index"] for e in errors} == indexes, errors
    for e in errors:
        assert isinstance(e.get("reason"), str) and e["reason"], e
    assert any(words.lower() in (e["reason"] + " " + str(e.get("field"))).lower() for e in errors), errors
    assert snapshot(db) == before, "a rejected file must write nothing"


@pytest.mark.parametrize(
    ("mutate", "indexes", "words"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_bad_feature_is_reported_and_nothing_is_written(
    empty_db: Database, mutate: Callable[[dict[str, Any]], None], indexes: set[int], words: str
) -> None:
    fc = base_fc()
    mutate(fc)
    # into an empty database: not even the good features of the file are written
    assert_rejected(empty_db, fc, set(indexes), words)
    assert snapshot(empty_db)["units"] == 0
    # into a populated database, together with a rename and a new village that alone would be fine
    run_import(empty_db, base_fc())
    fc["features"][I_G1]["properties"]["name"] = "改名不该生效"
    fc["features"].append(feature("320102001004", "新村", "village", TOWN))
    assert_rejected(empty_db, fc, set(indexes), words)


@pytest.mark.parametrize(
    "data",
    [
        [],
        "FeatureCollection",
        {"type": "Feature", "properties": {}, "geometry": None},
        {"type": "FeatureCollection"},
        {"type": "FeatureCollection", "features": {"0": {}}},
    ],
    ids=["list", "string", "feature", "no-features", "features-not-a-list"],
)
def test_not_a_feature_collection(empty_db: Database, data: Any) -> None:
    # "not a GeoJSON FeatureCollection" or "features must be a list"
    assert_rejected(empty_db, data, {None}, "feature")


def test_feature_that_is_not_a_feature(empty_db: Database) -> None:
    fc = base_fc()
    fc["features"].insert(2, {"type": "Point", "coordinates": [1, 2]})
    fc["features"].insert(4, {"type": "Feature", "properties": None, "geometry": None})
    assert_rejected(empty_db, fc, {2, 4}, "feature")


def test_every_bad_feature_is_listed(empty_db: Database) -> None:
    fc = base_fc()
    set_prop(I_V2, "kind", "county")(fc)
    set_geometry(I_G1, BOW_TIE)(fc)
    set_geometry(I_G4, None)(fc)
    assert_rejected(empty_db, fc, {I_V2, I_G1, I_G4}, "kind")


def test_overlapping_unified_grids_in_one_file(empty_db: Database) -> None:
    fc = base_fc()
    fc["features"].append(feature(V1 + "003", "重叠网格", "grid", V1, box(118.00, 32.00, 118.02, 32.02)))
    before = snapshot(empty_db)
    with pytest.raises(Invalid) as info:
        run_import(empty_db, fc)
    errors = info.value.errors
    assert len(errors) == 1, errors
    assert errors[0]["index"] in (I_G1, N_BASE)
    assert (
        "overlap" in errors[0]["reason"] and G1 in errors[0]["reason"] and V1 + "003" in errors[0]["reason"]
    )
    assert snapshot(empty_db) == before


def test_unified_grid_overlapping_a_stored_grid(world: Database) -> None:
    """A later file may not overlap grids already in the database either."""
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature("320102001001", "桂园社区", "village", TOWN, box(118.00, 32.00, 118.10, 32.10)),
            feature(V2 + "003", "重叠网格", "grid", V2, box(118.16, 32.05, 118.19, 32.08)),
        ],
    }
    assert_rejected(world, fc, {1}, "overlap")


def test_touching_grids_are_not_overlapping(world: Database) -> None:
    """Shared edges are fine: re-tiling village 2 into three strips is accepted."""
    fc = base_fc()
    fc["features"][I_G3]["geometry"] = box(118.10, 32.00, 118.14, 32.10)
    fc["features"][I_G4]["geometry"] = box(118.14, 32.00, 118.17, 32.10)
    fc["features"].append(feature(V2 + "003", "兰桥第三网格", "grid", V2, box(118.17, 32.00, 118.20, 32.10)))
    report = run_import(world, fc)
    assert (report.created, report.updated, report.unchanged) == (1, 2, N_BASE - 2)
    assert locate(world, 118.185, 32.05).grid == V2 + "003"
    assert locate(world, 118.145, 32.05).grid == G4


def test_grid_code_taken_by_a_stored_unit(world: Database) -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature(DISTRICT, "同码网格", "grid", V1, box(118.0, 32.0, 118.01, 32.01)),
        ],
    }
    assert_rejected(world, fc, {0}, "unit")


def test_moving_a_unit_is_rejected(world: Database) -> None:
    fc = base_fc()
    fc["features"].append(feature("320102002000", "新镇", "town", DISTRICT))
    fc["features"][I_V2]["properties"]["parent"] = "320102002000"
    # a village may not change its parent, and its code does not fit the new town either
    with pytest.raises(Invalid) as info:
        run_import(world, fc)
    assert {e["index"] for e in info.value.errors} == {I_V2}


# --------------------------------------------------------------------------- location


def test_locate_point(world: Database) -> None:
    chain1 = [V1, TOWN, DISTRICT, CITY]
    chain2 = [V2, TOWN, DISTRICT, CITY]
    for lon, lat, grid, chain in [
        (118.025, 32.05, G1, chain1),
        (118.075, 32.01, G2, chain1),
        (118.125, 32.09, G3, chain2),
        (118.199, 32.001, G4, chain2),
    ]:
        result = locate(world, lon, lat)
        assert result is not None, (lon, lat)
        assert (result.grid, result.chain) == (grid, chain)
        assert result.layers == {}
    assert locate(world, 118.025, 32.05).grid_name == "桂园第一网格"
    # on an edge shared by two grids: exactly one answer, the same every time (lowest code)
    for lon, lat, pair in [(118.05, 32.05, (G1, G2)), (118.10, 32.05, (G2, G3)), (118.15, 32.03, (G3, G4))]:
        answers = {locate(world, lon, lat).grid for _ in range(3)}
        assert answers == {min(pair)}
    # outside every grid
    for lon, lat in [(117.99, 32.05), (118.21, 32.05), (118.10, 32.11), (0.0, 0.0), (-73.9, 40.7)]:
        assert locate(world, lon, lat) is None, (lon, lat)


def test_locate_follows_changes(world: Database) -> None:
    """The cached spatial index is rebuilt after an import changes the grids."""
    assert locate(world, 118.06, 32.05).grid == G2
    fc = base_fc()
    fc["features"][I_G1]["geometry"] = box(118.00, 32.00, 118.07, 32.10)
    fc["features"][I_G2]["geometry"] = box(118.07, 32.00, 118.10, 32.10)
    run_import(world, fc)
    assert locate(world, 118.06, 32.05).grid == G1


def test_locate_in_a_recreated_database(tmp_path: Path) -> None:
    """A database dropped and recreated under the same URL must not reuse the old spatial index."""
    from shiyu.dbadmin import upgrade

    url = f"sqlite:///{tmp_path / 'again.db'}"
    for g1_east, expected in [(118.05, G2), (118.07, G1)]:
        for leftover in tmp_path.glob("again.db*"):
            leftover.unlink()
        db = Database(url)
        upgrade(db)
        fc = base_fc()
        fc["features"][I_G1]["geometry"] = box(118.00, 32.00, g1_east, 32.10)
        fc["features"][I_G2]["geometry"] = box(g1_east, 32.00, 118.10, 32.10)
        run_import(db, fc)
        assert locate(db, 118.06, 32.05).grid == expected
        db.dispose()


def test_scoped_locate(world: Database) -> None:
    with world.unit_of_work() as s:
        result = geo.locate(s, system(), 118.125, 32.05)
    assert result.grid == G3
    from shiyu.kit.errors import NotFound

    with pytest.raises(NotFound), world.unit_of_work() as s:
        geo.locate(s, system(), 10.0, 10.0)


# --------------------------------------------------------------------------- other layers (多格合一)


def test_police_layer_is_mapped_onto_unified_grids(world: Database) -> None:
    report = run_import(world, police_fc(), layer="police")
    assert (report.created, report.updated, report.unchanged) == (1, 0, 0)
    with world.unit_of_work(write=False) as s:
        police = s.execute(select(Grid).where(Grid.code == POLICE)).scalar_one()
        links = dict(
            s.execute(select(GridLink.unified_code, GridLink.share).where(GridLink.grid_code == POLICE)).all()
        )
    assert police.layer_code == "police" and police.unit_code == V1
    assert set(links) == {G1, G2}
    assert all(share == pytest.approx(1.0) for share in links.values())
    r1 = locate(world, 118.025, 32.05)
    assert (r1.grid, r1.layers) == (G1, {"police": POLICE})
    assert locate(world, 118.075, 32.05).layers == {"police": POLICE}
    r3 = locate(world, 118.125, 32.05)
    assert r3.grid == G3 and "police" not in r3.layers
    # police grids do not take part in the unified layer
    assert locate(world, 118.025, 32.05).grid == G1

    before = snapshot(world)
    again = run_import(world, police_fc(), layer="police")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    assert snapshot(world) == before

    # the police beat grows over half of village 2: links follow
    fc = police_fc()
    fc["features"][0]["geometry"] = box(118.00, 32.00, 118.15, 32.10)
    assert run_import(world, fc, layer="police").updated == 1
    with world.unit_of_work(write=False) as s:
        linked = set(s.execute(select(GridLink.unified_code).where(GridLink.grid_code == POLICE)).scalars())
    assert linked == {G1, G2, G3}
    assert locate(world, 118.125, 32.05).layers == {"police": POLICE}


def test_other_layers_may_overlap_and_span_villages(world: Database) -> None:
    """Only unified grids must sit in one village and not overlap."""
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature("U0001", "城管一区", "grid", V1, box(118.00, 32.00, 118.15, 32.10)),
            feature("U0002", "城管二区", "grid", TOWN, box(118.08, 32.00, 118.20, 32.10)),
        ],
    }
    report = run_import(world, fc, layer="urban")
    assert report.created == 2
    assert locate(world, 118.18, 32.05).layers == {"urban": "U0002"}


def test_grid_cannot_change_layer(world: Database) -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature(G1, "桂园第一网格", "grid", V1, box(118.00, 32.00, 118.05, 32.10)),
        ],
    }
    assert_rejected(world, fc, {0}, "another layer", layer="police")


def test_unknown_layer(world: Database) -> None:
    before = snapshot(world)
    with pytest.raises(Invalid) as info:
        run_import(world, police_fc(), layer="fire")
    assert info.value.code == "unknown_layer"
    assert snapshot(world) == before


def test_unified_changes_relink_other_layers(world: Database) -> None:
    run_import(world, police_fc(), layer="police")
    fc = base_fc()
    fc["features"].append(
        feature("320102001003", "新社区", "village", TOWN, box(118.20, 32.00, 118.30, 32.10))
    )
    fc["features"].append(
        feature("320102001003001", "新社区网格", "grid", "320102001003", box(118.20, 32.00, 118.30, 32.10))
    )
    fc["features"][I_G1]["geometry"] = box(118.00, 32.00, 118.04, 32.10)
    fc["features"][I_G2]["geometry"] = box(118.04, 32.00, 118.10, 32.10)
    report = run_import(world, fc)
    assert (report.created, report.updated) == (2, 2)
    with world.unit_of_work(write=False) as s:
        links = dict(
            s.execute(select(GridLink.unified_code, GridLink.share).where(GridLink.grid_code == POLICE)).all()
        )
    assert set(links) == {G1, G2}
    assert locate(world, 118.25, 32.05).grid == "320102001003001"
