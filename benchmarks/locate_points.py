"""Benchmark: locate 1,000,000 lon/lat points in the medium demo city's unified grids.

Usage::

    python benchmarks/locate_points.py [--points 1000000] [--seed 1] [--json PATH]

Measures, in one run and on the same data:

* ``GridLocator`` index build time and locate time for all points (best of 3);
* geopandas ``sjoin(points, grids, predicate="within")`` (GeoDataFrame construction reported
  separately; fresh frames each repetition, so the spatial index geopandas builds is included);
* shapely's vectorised ``STRtree.query(points, predicate="intersects")`` (point creation included);
* a per-point Python loop of ``STRtree.query(Point, predicate="intersects")`` timed on a sample
  and extrapolated linearly to all points.

With ``--json PATH`` the figures are merged into that JSON file under ``"locate_points"``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import shapely

try:
    from shiyu.domains.geo.locator import GridLocator
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from shiyu.domains.geo.locator import GridLocator
from shiyu.kit.figures import merge_json  # noqa: E402

TARGET_POINTS = 1_000_000
TARGET_SECONDS = 1.0


def load_grids(seed: int) -> tuple[list[str], list[shapely.Geometry], str]:
    """Unified grids of the medium demo city; an equivalent Voronoi tiling if unavailable."""
    try:
        from shiyu.demo.city import generate_city
    except ImportError as exc:
        reason = f"shiyu.demo.city unavailable ({exc})"
    else:
        city = generate_city("medium", seed=seed)
        return (
            [g.code for g in city.grids],
            [g.polygon for g in city.grids],
            f'generate_city("medium", seed={seed})',
        )
    codes, polys = fallback_tiling(seed)
    return codes, polys, f"FALLBACK Voronoi tiling (NOT the demo city: {reason})"


def fallback_tiling(seed: int, n: int = 3000) -> tuple[list[str], list[shapely.Geometry]]:
    """~3,000 Voronoi grids tiling an irregular city outline near lon 118.8, lat 32.05 (1.6 x 1.2 deg)."""
    rng = np.random.default_rng(seed)
    x0, y0, w, h = 118.0, 31.45, 1.6, 1.2
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = 1 + 0.12 * np.sin(3 * t) + 0.07 * np.cos(5 * t)
    ring = np.c_[x0 + w / 2 + w / 2 * r * np.cos(t) * 0.95, y0 + h / 2 + h / 2 * r * np.sin(t) * 0.95]
    outline = shapely.Polygon(ring).intersection(shapely.box(x0, y0, x0 + w, y0 + h))
    seeds = rng.uniform([x0, y0], [x0 + w, y0 + h], size=(2 * n, 2))
    seeds = seeds[shapely.contains_xy(outline, seeds[:, 0], seeds[:, 1])][:n]
    envelope = shapely.box(x0 - 1, y0 - 1, x0 + w + 1, y0 + h + 1)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=envelope))
    polys = [g for g in shapely.intersection(cells, outline) if not g.is_empty]
    return [f"F{i:05d}" for i in range(len(polys))], polys


def timed(fn, repeat: int = 1):
    """(best seconds, all seconds, last result)."""
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=TARGET_POINTS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loop-sample", type=int, default=20_000)
    parser.add_argument("--sjoin-repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    codes, polys, source = load_grids(args.seed)
    data_seconds = time.perf_counter() - t0
    minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(polys))
    rng = np.random.default_rng(args.seed)
    n = args.points
    x = rng.uniform(minx, maxx, n)
    y = rng.uniform(miny, maxy, n)
    print(
        f"data: {source}: {len(polys)} grids, bounds ({minx:.3f}, {miny:.3f}, {maxx:.3f}, {maxy:.3f}), "
        f"generated in {data_seconds:.1f} s",
        flush=True,
    )

    # --- ours
    build_s, _, loc = timed(lambda: GridLocator(codes, polys))
    locate_s, locate_runs, ours = timed(lambda: loc.locate_index_many(x, y), repeat=3)
    index_mb = (loc._table.nbytes + loc._cand.nbytes + loc._cand_off.nbytes) / 1e6
    print(
        f"GridLocator: {loc}; build {build_s:.3f} s; locate best {locate_s:.3f} s "
        f"(runs {', '.join(f'{t:.3f}' for t in locate_runs)})",
        flush=True,
    )

    # --- shapely vectorised STRtree.query (the plain approach)
    tree = shapely.STRtree(np.array(polys, dtype=object))

    def strtree_vectorised() -> np.ndarray:
        qi, pi = tree.query(shapely.points(x, y), predicate="intersects")
        out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(out, qi, pi)
        out[out == np.iinfo(np.int64).max] = -1
        return out

    strtree_s, _, strtree_res = timed(strtree_vectorised)
    strtree_mismatch = int((strtree_res != ours).sum())
    del strtree_res
    print(
        f"STRtree.query(points) vectorised: {strtree_s:.3f} s, mismatches vs ours {strtree_mismatch}",
        flush=True,
    )

    # --- per-point Python loop (sample, extrapolated)
    m = min(args.loop_sample, n)
    sample = rng.choice(n, m, replace=False) if m < n else np.arange(n)
    sx, sy = x[sample].tolist(), y[sample].tolist()

    def loop() -> np.ndarray:
        out = np.full(m, -1, dtype=np.int64)
        for k in range(m):
            hits = tree.query(shapely.Point(sx[k], sy[k]), predicate="intersects")
            if hits.size:
                out[k] = hits.min()
        return out

    loop_sample_s, _, loop_res = timed(loop)
    loop_s = loop_sample_s * n / m
    loop_mismatch = int((loop_res != ours[sample]).sum())
    print(
        f"per-point loop: {loop_sample_s:.3f} s for {m} points -> {loop_s:.1f} s extrapolated to {n}; "
        f"mismatches vs ours {loop_mismatch}",
        flush=True,
    )

    # --- geopandas sjoin
    gpd_error = None
    gdf_build_s = sjoin_s = math.nan
    sjoin_runs: list[float] = []
    sjoin_mismatch = sjoin_explained = sjoin_unexplained = -1
    try:
        import geopandas as gpd
    except ImportError as exc:
        gpd_error = f"geopandas not installed ({exc})"
    else:
        gdf_times = []
        for _ in range(max(1, args.sjoin_repeat)):
            t0 = time.perf_counter()
            points_gdf = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs="EPSG:4326")
            grids_gdf = gpd.GeoDataFrame({"code": codes}, geometry=list(polys), crs="EPSG:4326")
            gdf_times.append(time.perf_counter() - t0)
            gc.collect()
            t0 = time.perf_counter()
            joined = gpd.sjoin(points_gdf, grids_gdf, predicate="within")
            sjoin_runs.append(time.perf_counter() - t0)
            del points_gdf, grids_gdf
        gdf_build_s, sjoin_s = min(gdf_times), min(sjoin_runs)
        theirs = np.full(n, -1, dtype=np.int64)
        theirs[joined.index.to_numpy()] = joined["index_right"].to_numpy()
        multi = int(joined.index.duplicated().sum())
        bad = np.flatnonzero(theirs != ours)
        sjoin_mismatch = int(bad.size)
        # "within" excludes the boundary: a point on a grid boundary has no sjoin match while
        # GridLocator assigns it to the lowest-index grid whose closed polygon contains it.
        geoms = np.array(polys, dtype=object)
        explained = np.zeros(bad.size, dtype=bool)
        has = ours[bad] >= 0
        g = geoms[ours[bad][has]]
        on_boundary = shapely.intersects_xy(g, x[bad][has], y[bad][has]) & ~shapely.contains_xy(
            g, x[bad][has], y[bad][has]
        )
        explained[has] = on_boundary & (theirs[bad][has] == -1)
        sjoin_explained = int(explained.sum())
        sjoin_unexplained = sjoin_mismatch - sjoin_explained
        print(
            f"geopandas sjoin: best {sjoin_s:.3f} s (runs {', '.join(f'{t:.3f}' for t in sjoin_runs)}); "
            f"GeoDataFrame construction {gdf_build_s:.3f} s; multi-matches {multi}",
            flush=True,
        )
        del joined

    located = int((ours >= 0).sum())
    # None: not evaluated (fewer points than the target asks for).
    passed = bool(locate_s < TARGET_SECONDS) if n >= TARGET_POINTS else None
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_source": source,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "shapely": shapely.__version__,
        "geos": ".".join(map(str, shapely.geos_version)),
        "grids": len(polys),
        "points": n,
        "points_in_a_grid": located,
        "raster": [loc._nx, loc._ny],
        "index_mb": round(index_mb, 2),
        "build_seconds": round(build_s, 4),
        "locate_seconds": round(locate_s, 4),
        "locate_runs": [round(t, 4) for t in locate_runs],
        "points_per_second": round(n / locate_s),
        "strtree_vectorised_seconds": round(strtree_s, 4),
        "strtree_vectorised_mismatches": strtree_mismatch,
        "geopandas_sjoin_seconds": None if gpd_error else round(sjoin_s, 4),
        "geopandas_sjoin_runs": [round(t, 4) for t in sjoin_runs],
        "geopandas_gdf_construction_seconds": None if gpd_error else round(gdf_build_s, 4),
        "geopandas_error": gpd_error,
        "sjoin_mismatches": None if gpd_error else sjoin_mismatch,
        "sjoin_mismatches_on_boundary": None if gpd_error else sjoin_explained,
        "sjoin_mismatches_unexplained": None if gpd_error else sjoin_unexplained,
        "loop_sample_points": m,
        "loop_sample_seconds": round(loop_sample_s, 4),
        "loop_seconds_extrapolated": round(loop_s, 2),
        "loop_mismatches": loop_mismatch,
        "ratio_geopandas_over_ours": None if gpd_error else round(sjoin_s / locate_s, 1),
        "ratio_strtree_vectorised_over_ours": round(strtree_s / locate_s, 1),
        "ratio_loop_over_ours": round(loop_s / locate_s, 1),
        "target": f"{TARGET_POINTS:,} points < {TARGET_SECONDS:g} s",
        "passed": passed,
    }
    report(results)

    if args.json is not None:
        merge_json(args.json, "locate_points", results)
    ok = passed is not False and strtree_mismatch == 0 and loop_mismatch == 0 and sjoin_unexplained in (0, -1)
    return 0 if ok else 1


def report(r: dict) -> None:
    n = r["points"]
    m = r["loop_sample_points"]
    sj = r["geopandas_sjoin_seconds"]
    rows = [
        (
            "GridLocator build (once)",
            f"{r['build_seconds']:.3f} s",
            f"raster {r['raster'][0]}x{r['raster'][1]}, {r['index_mb']:.1f} MB",
        ),
        (
            f"GridLocator locate {n:,} pts (best of 3)",
            f"{r['locate_seconds']:.3f} s",
            f"{r['points_per_second'] / 1e6:.1f} M points/s",
        ),
        (
            "geopandas sjoin within",
            "n/a" if sj is None else f"{sj:.3f} s",
            r["geopandas_error"]
            or f"x{r['ratio_geopandas_over_ours']} ours; GeoDataFrame construction "
            f"{r['geopandas_gdf_construction_seconds']:.3f} s (not included)",
        ),
        (
            "STRtree.query(points) vectorised",
            f"{r['strtree_vectorised_seconds']:.3f} s",
            f"x{r['ratio_strtree_vectorised_over_ours']} ours; point creation included",
        ),
        (
            "per-point loop STRtree.query(Point)",
            f"{r['loop_seconds_extrapolated']:.1f} s",
            f"x{r['ratio_loop_over_ours']} ours; EXTRAPOLATED linearly from {m:,} pts "
            f"({r['loop_sample_seconds']:.2f} s)",
        ),
    ]
    if sj is None:
        agree = "sjoin not run"
    else:
        agree = (
            f"ours vs sjoin: {r['sjoin_mismatches']} mismatches, "
            f"{r['sjoin_mismatches_on_boundary']} on a grid boundary (sjoin 'within' excludes boundaries), "
            f"{r['sjoin_mismatches_unexplained']} unexplained"
        )
    agree += (
        f"; ours vs vectorised STRtree: {r['strtree_vectorised_mismatches']} mismatches; "
        f"ours vs loop sample: {r['loop_mismatches']} mismatches"
    )
    header = (
        f"{r['data_source']} | {r['grids']:,} grids | {n:,} points ({r['points_in_a_grid']:,} in a grid) | "
        f"os.cpu_count() = {r['cpu_count']} | shapely {r['shapely']} / GEOS {r['geos']}"
    )
    verdict = (
        f"{ {True: 'PASS', False: 'FAIL', None: 'NOT EVALUATED'}[r['passed']] }: {r['target']} "
        f"(measured {r['locate_seconds']:.3f} s for {n:,} points)"
    )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(header)
        for name, value, note in rows:
            print(f"  {name:<42} {value:>10}  {note}")
        print(agree)
        print(verdict)
        return
    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title="locate_points", caption=header)
    table.add_column("method")
    table.add_column("time", justify="right")
    table.add_column("notes")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(agree)
    colour = {True: "green", False: "red", None: "yellow"}[r["passed"]]
    console.print(f"[bold {colour}]{verdict}[/]")


if __name__ == "__main__":
    raise SystemExit(main())
