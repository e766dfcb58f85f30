"""Getis-Ord Gi* hot spots 热点分析: agreement with esda on a bundled libpysal dataset, a planted
cluster on a synthetic lattice, the CLI (file and database modes) and item counts per grid."""

from __future__ import annotations

import json
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import box, mapping
from typer.testing import CliRunner

from shiyu.domains.analysis.hotspots import HotspotResult, gi_star, layer_from_geojson, month_bounds
from shiyu.kit.db import Database
from shiyu.kit.errors import Invalid

# --------------------------------------------------------------------------- helpers


def lattice(n: int = 7) -> list[Any]:
    return [box(i, j, i + 1, j + 1) for j in range(n) for i in range(n)]


def planted(n: int = 7, hot: tuple[int, int] = (1, 1)) -> tuple[list[Any], list[float], list[str], set[str]]:
    """An n×n lattice of unit squares: a 3×3 block of high values around ``hot``, noise elsewhere."""
    rng = np.random.default_rng(7)
    geoms, values, ids, cluster = [], [], [], set()
    for j in range(n):
        for i in range(n):
            geoms.append(box(i, j, i + 1, j + 1))
            fid = f"c{i}_{j}"
            ids.append(fid)
            if abs(i - hot[0]) <= 1 and abs(j - hot[1]) <= 1:
                values.append(100.0 + float(rng.integers(0, 5)))
                cluster.add(fid)
            else:
                values.append(float(rng.integers(0, 10)))
    return geoms, values, ids, cluster


def feature_collection(geoms: list[Any], values: list[Any], ids: list[str], field: str = "n") -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(g), "properties": {"code": fid, field: v}}
        for g, v, fid in zip(geoms, values, ids, strict=True)]}


# --------------------------------------------------------------------------- gi_star


def test_matches_esda_on_columbus() -> None:
    """Same queen weights (built by libpysal from the shapefile itself), binary transform and
    seed: z and p_sim agree with esda's G_Local to 1e-9."""
    import libpysal
    from esda.getisord import G_Local
    from libpysal.weights import Queen

    shp = libpysal.examples.get_path("columbus.shp")
    dbf = libpysal.examples.get_path("columbus.dbf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shp_file, dbf_file = libpysal.io.open(shp), libpysal.io.open(dbf)
        try:
            polys = [shapely.geometry.shape(p.__geo_interface__) for p in shp_file.read()]
            crime = np.asarray(dbf_file.by_col("CRIME"), dtype=float)
            polyid = [str(v) for v in dbf_file.by_col("POLYID")]
        finally:
            shp_file.close()
            dbf_file.close()
        w = Queen.from_shapefile(shp)
        w.transform = "B"
        ref = G_Local(crime, w, transform="B", permutations=999, star=True, seed=12345, n_jobs=1)
    assert len(polys) == 49 and not w.islands

    ours = gi_star(polys, crime.tolist(), polyid, permutations=999, seed=12345)
    assert [r.id for r in ours] == polyid
    np.testing.assert_allclose([r.z for r in ours], ref.Zs, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r.p_sim for r in ours], ref.p_sim, rtol=0, atol=1e-9)
    np.testing.assert_allclose([r.p_norm for r in ours], ref.p_norm, rtol=0, atol=1e-9)
    assert {r.cls for r in ours} == {"hot", "cold", "none"}  # Columbus crime has both kinds of cluster
    for r in ours:
        assert r.cls == ("none" if r.p_sim > 0.05 else "hot" if r.z > 0 else "cold")


def test_planted_cluster_is_hot() -> None:
    geoms, values, ids, cluster = planted()
    results = gi_star(geoms, values, ids, permutations=999, seed=1)
    by_id = {r.id: r for r in results}
    centre = by_id["c1_1"]
    assert centre.cls == "hot" and centre.z == max(r.z for r in results)
    # the whole planted block leans hot; its corners see only 4 of 9 high cells, the rest are significant
    assert all(by_id[c].z > 0 for c in cluster)
    assert sum(by_id[c].cls == "hot" for c in cluster) >= 7
    assert all(by_id[c].cls == "hot" for c in ("c1_1", "c0_1", "c1_0", "c2_1", "c1_2"))
    # cells whose queen window does not touch the cluster (Chebyshev distance >= 3 from its centre)
    far = [r for r in results if max(abs(int(c) - 1) for c in r.id[1:].split("_")) >= 3]
    assert far and all(r.cls in ("none", "cold") for r in far)
    assert all(r.z < 0 for r in far)
    # reproducible with a seed
    assert gi_star(geoms, values, ids, permutations=999, seed=1) == results


def test_islands_and_flat_values() -> None:
    geoms = lattice(3) + [box(10, 10, 11, 11)]
    ids = [str(i) for i in range(10)]
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0]
    results = gi_star(geoms, values, ids, permutations=99)
    island = results[-1]
    assert island.island and island.cls == "none" and (island.z, island.p_sim, island.p_norm) == (0.0, 1.0, 1.0)
    assert not any(r.island for r in results[:-1])
    flat = gi_star(lattice(3), [0.0] * 9, [str(i) for i in range(9)])
    assert all(r.cls == "none" and r.z == 0.0 and r.p_sim == 1.0 for r in flat)


@pytest.mark.parametrize("kwargs, code", [
    ({"geoms": lattice(2)[:2], "values": [1.0, 2.0]}, "hotspot_too_few"),
    ({"values": [1.0] * 3}, "hotspot_lengths"),
    ({"values": [1.0, float("nan")] + [1.0] * 7}, "hotspot_value"),
    ({"permutations": 0}, "hotspot_permutations"),
    ({"geoms": [shapely.Point(0, 0)] + lattice(3)[1:]}, "hotspot_geometry"),
])
def test_gi_star_rejects_bad_input(kwargs: dict[str, Any], code: str) -> None:
    args: dict[str, Any] = {"geoms": lattice(3), "values": [float(i) for i in range(9)], "permutations": 99}
    args.update(kwargs)
    n = len(args["geoms"])
    with pytest.raises(Invalid) as exc:
        gi_star(args["geoms"], args["values"], [str(i) for i in range(n)], permutations=args["permutations"])
    assert exc.value.code == code


def test_month_bounds() -> None:
    start, end = month_bounds("2025-12")
    assert start.isoformat() == "2025-12-01T00:00:00+08:00" and end.isoformat() == "2026-01-01T00:00:00+08:00"
    for bad in ("2025-13", "2025/01", "", "202501"):
        with pytest.raises(Invalid):
            month_bounds(bad)


def test_layer_from_geojson_names_the_feature() -> None:
    geoms, values, ids, _ = planted(3)
    fc = feature_collection(geoms, values, ids)
    assert layer_from_geojson(fc, "n")[2] == ids
    fc["features"][4]["properties"]["n"] = "many"
    with pytest.raises(Invalid, match="feature 4: field 'n' is not numeric"):
        layer_from_geojson(fc, "n")


# --------------------------------------------------------------------------- CLI (file mode)


def run_cli(*args: str) -> Any:
    from shiyu.cli import app

    return CliRunner().invoke(app, ["analysis", "hotspots", *args])


def test_cli_geojson(tmp_path: Path) -> None:
    geoms, values, ids, cluster = planted()
    path = tmp_path / "layer.geojson"
    path.write_text(json.dumps(feature_collection(geoms, values, ids)), encoding="utf-8")
    res = run_cli("--input", str(path), "--value", "n", "--permutations", "199", "--seed", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["permutations"] == 199 and out["seed"] == 3
    feats = out["features"]
    assert len(feats) == len(ids) and [f["id"] for f in feats] == ids
    assert set(feats[0]) >= {"id", "z", "p_sim", "class"}
    assert feats[ids.index("c1_1")]["class"] == "hot"
    assert sum(f["class"] == "hot" for f in feats if f["id"] in cluster) >= 7
    assert {f["class"] for f in feats} <= {"hot", "cold", "none"}
    # plain text mode
    res = run_cli("--input", str(path), "--value", "n", "--permutations", "99")
    assert res.exit_code == 0 and "c1_1" in res.stdout and "hot" in res.stdout


def test_cli_bad_input(tmp_path: Path) -> None:
    geoms, values, ids, _ = planted(3)

    def write(name: str, data: Any) -> str:
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return str(p)

    missing_field = feature_collection(geoms, values, ids)
    del missing_field["features"][2]["properties"]["n"]
    non_numeric = feature_collection(geoms, values, ids)
    non_numeric["features"][5]["properties"]["n"] = "abc"
    cases = [
        ([str(tmp_path / "nope.geojson")], "cannot read"),
        ([write("bad.json", "{not json")], "not valid JSON"),
        ([write("list.json", [1, 2])], "not a GeoJSON FeatureCollection"),
        ([write("point.json", {"type": "Feature"})], "not a GeoJSON FeatureCollection"),
        ([write("missing.json", missing_field)], "feature 2: field 'n' is missing"),
        ([write("nonnum.json", non_numeric)], "feature 5: field 'n' is not numeric"),
        ([write("two.json", feature_collection(geoms[:2], values[:2], ids[:2]))], "at least 3 features"),
    ]
    for args, message in cases:
        res = run_cli("--input", *args, "--value", "n", "--json")
        assert res.exit_code != 0, (args, res.output)
        assert message in res.output, (message, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert "Traceback" not in res.output
    res = run_cli("--value", "n")  # neither --input nor --unit
    assert res.exit_code == 2 and "either --input" in res.output
    res = run_cli("--input", write("ok.json", feature_collection(geoms, values, ids)))  # no --value
    assert res.exit_code == 2 and "--value" in res.output


# --------------------------------------------------------------------------- database


DISTRICT = "320102000000"
PERIOD = "2025-03"


def test_grid_hotspots_on_database(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import shiyu.cli
    from shiyu.domains.analysis.hotspots import grid_hotspots, queen_weights
    from shiyu.domains.geo.models import Grid
    from shiyu.domains.items import service as items
    from shiyu.domains.items.schemas import ItemCreate
    from shiyu.platform.authz.principal import Principal
    from shiyu.platform.units import service as units

    system = Principal.system("hotspot-test")
    with db.unit_of_work() as s:
        district = units.get(s, DISTRICT)
        assert district is not None
        rows = s.execute(Grid.__table__.select().where(
            Grid.layer_code == "unified", Grid.scope_path.startswith(district.path)).order_by(Grid.code)).all()
        codes = [r.code for r in rows]
        polys = [shapely.from_wkb(bytes(r.geom)) for r in rows]
        w = queen_weights(polys)
        # the grid with the most neighbours is the centre of the planted cluster
        centre = max(range(len(codes)), key=lambda i: (w.cardinalities[i], -i))
        plan = [(centre, 6)] + [(j, 2) for j in w.neighbors[centre]]
        when = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)
        for idx, count in plan:
            pt = polys[idx].representative_point()
            for k in range(count):
                created = items.create_item(s, system, ItemCreate(
                    kind="hotline", title=f"热点测试 {codes[idx]} {k}", source="hotline", lon=pt.x, lat=pt.y),
                    idempotency_key=uuid.uuid4().hex, now=when)
                assert created.item.grid_code == codes[idx]
        # an item of another month, in a grid far away, must not count
        far = min(range(len(codes)), key=lambda i: -polys[i].distance(polys[centre]))
        pt = polys[far].representative_point()
        items.create_item(s, system, ItemCreate(kind="hotline", title="热点测试 其他月份", source="hotline",
                                                lon=pt.x, lat=pt.y),
                          idempotency_key=uuid.uuid4().hex, now=datetime(2025, 4, 2, tzinfo=UTC))

    with db.unit_of_work(write=False) as s:
        results = grid_hotspots(s, system, unit_code=DISTRICT, period=PERIOD, category=None,
                                permutations=499, seed=12345)
        april = grid_hotspots(s, system, unit_code=DISTRICT, period="2025-04", category=None,
                              permutations=99, seed=1)
        with pytest.raises(Invalid):
            grid_hotspots(s, system, unit_code="999999999999", period=PERIOD, category=None,
                          permutations=99, seed=1)
    assert [r.id for r in results] == codes
    assert all(isinstance(r, HotspotResult) for r in results)
    by_id = {r.id: r for r in results}
    top = by_id[codes[centre]]
    assert top.value == 6.0 and sum(r.value for r in results) == 6 + 2 * len(plan[1:])
    assert top.cls == "hot" and top.z == max(r.z for r in results)
    assert by_id[codes[far]].value == 0 and by_id[codes[far]].cls != "hot"
    assert sum(r.value for r in april) == 1

    # the same through the CLI, as the system principal against the configured database
    monkeypatch.setattr(shiyu.cli, "_db", lambda: db)
    res = run_cli("--unit", DISTRICT, "--period", PERIOD, "--permutations", "499", "--json")
    assert res.exit_code == 0, res.output
    feats = json.loads(res.stdout)["features"]
    assert [f["id"] for f in feats] == codes
    assert feats[centre]["class"] == "hot"
    assert feats[centre]["z"] == pytest.approx(top.z, abs=1e-12)
    res = run_cli("--unit", DISTRICT, "--period", "2025-3", "--json")
    assert res.exit_code == 2 and "YYYY-MM" in res.output
    res = run_cli("--unit", "999999999999", "--period", PERIOD, "--json")
    assert res.exit_code == 2 and "Traceback" not in res.output
