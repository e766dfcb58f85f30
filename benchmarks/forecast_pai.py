"""Benchmark: short-term hot-spot forecast 短期热点预测, PAI and PEI on held-out periods.

Usage::

    python benchmarks/forecast_pai.py [--seed 1] [--cell 200] [--json PATH]

Compares the exponentially weighted kernel density forecast (``ew_kde_forecast``, parameters
chosen by ``choose_params`` on the last training period only) with the naive baseline (last
period's counts) by PAI and PEI at 1% and 5% of the study area, on

1. the small demo city: its history written to a temporary SQLite database (``load_city`` then
   ``load_history`` with 16 months ending 2026-01-01 local time, about 6,700 items), monthly
   periods in local time; each of the last 3 full months is held out in turn and forecast from
   the 12 months before it; cells of ``--cell`` metres (local equirectangular projection), the
   study area being the cells whose centre lies inside the city;
2. West Yorkshire street crime (police.uk) shipped in the PyPI package ``crime-sim-toolkit``
   (``tests/testing_data/test_policedata``: 2016-07, 2017-07 and 2018-07, i.e. the same month in
   three years, not consecutive months): 2018-07 is held out and forecast from the other two;
   the study area is the cells within about 400 m of a training event (no peeking at 2018-07).

Prints a PASS/FAIL line "forecast does not lose to naive": mean PAI@5% of the forecast >= the
naive baseline's on each dataset. With ``--json PATH`` the figures are merged into that JSON file
under ``"forecast_pai"``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

try:
    from shiyu.domains.analysis import forecast as fc
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from shiyu.domains.analysis import forecast as fc
from shiyu.kit.figures import merge_json  # noqa: E402

COVERAGES = (0.01, 0.05)
DECAYS = (0.3, 0.5, 0.7, 0.85, 1.0)
BANDWIDTHS = (0.0, 100.0, 200.0, 400.0, 800.0)
M_PER_DEG = 111_320.0


def project(lon: np.ndarray, lat: np.ndarray, lon0: float, lat0: float) -> np.ndarray:
    """Local equirectangular projection 局部等距圆柱投影 to metres around (lon0, lat0)."""
    return np.column_stack([(lon - lon0) * M_PER_DEG * math.cos(math.radians(lat0)), (lat - lat0) * M_PER_DEG])


def evaluate(train: list[np.ndarray], target: np.ndarray, cells: fc.CellGrid, mask: np.ndarray) -> dict[str, Any]:
    """Choose parameters on ``train``, forecast ``target``; PAI/PEI of forecast and naive."""
    cands = [(d, b) for d in DECAYS for b in BANDWIDTHS]
    t0 = time.perf_counter()
    decay, bw = fc.choose_params(train, cells, cands, coverage=0.05, mask=mask)
    f = fc.ew_kde_forecast(train, cells, decay=decay, bandwidth=bw)[mask]
    secs = time.perf_counter() - t0
    n = fc.naive_forecast(train[-1], cells)[mask]
    actual = cells.counts(target)[mask]
    areas = cells.areas[mask]
    out: dict[str, Any] = {"decay": decay, "bandwidth_m": bw, "events": int(actual.sum()),
                           "events_outside_area": int(len(target) - actual.sum()), "fit_seconds": round(secs, 2)}
    for name, s in (("forecast", f), ("naive", n)):
        for cov in COVERAGES:
            pct = f"{round(cov * 100)}%"
            out[f"{name}_pai@{pct}"] = round(fc.pai(s, actual, areas, cov), 3)
            out[f"{name}_pei@{pct}"] = round(fc.pei(s, actual, areas, cov), 3)
    return out


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    print(f"\n== {title}")
    cols = [f"{m}@{round(c * 100)}%" for m in ("pai", "pei") for c in COVERAGES]
    print(f"{'held-out':<10} {'model':<9} " + " ".join(f"{c:>9}" for c in cols) + "   params")
    for period, r in rows.items():
        for name in ("forecast", "naive"):
            vals = " ".join(f"{r[f'{name}_{c}']:>9.3f}" for c in cols)
            extra = (f"  decay={r['decay']} bw={r['bandwidth_m']:.0f} m, {r['events']} events"
                     if name == "forecast" else "")
            print(f"{period:<10} {name:<9} {vals}{extra}")
    mean = {f"{name}_{c}": float(np.nanmean([r[f"{name}_{c}"] for r in rows.values()]))
            for name in ("forecast", "naive") for c in cols}
    for name in ("forecast", "naive"):
        print(f"{'mean':<10} {name:<9} " + " ".join(f"{mean[f'{name}_{c}']:>9.3f}" for c in cols))
    for c in cols:
        ratio = mean[f"forecast_{c}"] / mean[f"naive_{c}"] if mean[f"naive_{c}"] else float("nan")
        print(f"  forecast / naive {c}: {ratio:.2f}x")
    return {k: round(v, 3) for k, v in mean.items()}


# --------------------------------------------------------------------------- demo city


def demo_points(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """(lon, lat, created_at UTC seconds, city) of the small demo city's history (temporary SQLite)."""
    from sqlalchemy import text

    from shiyu import dbadmin
    from shiyu.demo.city import generate_city
    from shiyu.demo.items import load_history
    from shiyu.demo.load import load_city
    from shiyu.kit.db import Database

    with tempfile.TemporaryDirectory(prefix="shiyu-forecast-") as tmp:
        db = Database(f"sqlite:///{tmp}/forecast.db")
        try:
            dbadmin.upgrade(db)
            city = generate_city("small", seed)
            with db.unit_of_work() as s:
                load_city(s, city)
                # 16 months ending at 2026-01-01 00:00 local: 15 full months 2024-10 .. 2025-12
                load_history(s, city, seed=seed, now=datetime(2025, 12, 31, 16, 0, tzinfo=UTC),
                             total=6_700, months=16)
            with db.unit_of_work(write=False) as s:
                rows = s.execute(text("SELECT lon, lat, created_at FROM work_items "
                                      "WHERE lon IS NOT NULL AND lat IS NOT NULL")).all()
        finally:
            db.dispose()
    lon = np.array([r[0] for r in rows], dtype=float)
    lat = np.array([r[1] for r in rows], dtype=float)
    ts = np.array([(r[2] if isinstance(r[2], datetime) else datetime.fromisoformat(str(r[2])))
                   .replace(tzinfo=UTC).timestamp() for r in rows])
    return lon, lat, ts, city


def run_demo(seed: int, cell: float) -> dict[str, Any]:
    import shapely

    t0 = time.perf_counter()
    lon, lat, ts, city = demo_points(seed)
    load_s = time.perf_counter() - t0
    # monthly periods in local time (UTC+8, no DST)
    local = (ts + 8 * 3600).astype("datetime64[s]").astype("datetime64[M]")
    months = np.arange(np.datetime64("2024-10"), np.datetime64("2026-01"))
    outline = shapely.union_all([g.polygon for g in city.grids])
    x0, y0, x1, y1 = outline.bounds
    lon0, lat0 = (x0 + x1) / 2, (y0 + y1) / 2
    xy = project(lon, lat, lon0, lat0)
    corners = project(np.array([x0, x1]), np.array([y0, y1]), lon0, lat0)
    cells = fc.CellGrid(float(corners[0, 0]), float(corners[0, 1]), float(corners[1, 0]), float(corners[1, 1]), cell)
    c = cells.centres()
    clon = lon0 + c[:, 0] / (M_PER_DEG * math.cos(math.radians(lat0)))
    clat = lat0 + c[:, 1] / M_PER_DEG
    mask = shapely.contains_xy(outline, clon, clat)
    per = [xy[local == m] for m in months]
    print(f"demo city: {len(lon)} items loaded in {load_s:.1f} s (temporary SQLite); "
          f"{len(months)} full months {months[0]} .. {months[-1]}, {np.mean([len(p) for p in per]):.0f} items/month; "
          f"raster {cells.nx} x {cells.ny} of {cell:.0f} m, study area {int(mask.sum())} cells "
          f"({mask.sum() * cell * cell / 1e6:.0f} km2)")
    rows = {}
    for k in (len(months) - 3, len(months) - 2, len(months) - 1):
        rows[str(months[k])] = evaluate(per[k - 12:k], per[k], cells, mask)
    mean = print_table("demo city (small): held-out month, forecast from the previous 12 months", rows)
    return {"source": f'generate_city("small", seed={seed}) + load_history(16 months, 6,700 items)',
            "cell_m": cell, "load_seconds": round(load_s, 1), "held_out": rows, "mean": mean}


# --------------------------------------------------------------------------- West Yorkshire


def west_yorkshire_files() -> list[Path]:
    import crime_sim_toolkit  # noqa: F401  (ImportError when the package is missing)

    root = Path(crime_sim_toolkit.__file__).resolve().parent
    return sorted(root.rglob("*-west-yorkshire-street.csv"))


def run_west_yorkshire(cell: float) -> dict[str, Any]:
    try:
        files = west_yorkshire_files()
    except ImportError as exc:
        msg = f"West Yorkshire: NOT RUN - crime-sim-toolkit is not installed ({exc}); pip install crime-sim-toolkit"
        print("\n" + msg)
        return {"skipped": msg}
    months: dict[str, list[tuple[float, float]]] = {}
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r.get("Longitude") and r.get("Latitude"):
                    months.setdefault(r["Month"], []).append((float(r["Longitude"]), float(r["Latitude"])))
    keys = sorted(months)
    if len(keys) < 3:
        msg = f"West Yorkshire: NOT RUN - crime-sim-toolkit ships {len(keys)} month(s) with coordinates, need 3"
        print("\n" + msg)
        return {"skipped": msg}
    keys = keys[-3:]
    ll = {k: np.array(months[k]) for k in keys}
    train_ll = np.vstack([ll[k] for k in keys[:2]])
    lon0, lat0 = float(train_ll[:, 0].mean()), float(train_ll[:, 1].mean())
    xy = {k: project(v[:, 0], v[:, 1], lon0, lat0) for k, v in ll.items()}
    train = [xy[k] for k in keys[:2]]
    cells = fc.CellGrid.around(np.vstack(train), cell, margin=2 * cell)
    # study area: cells within ~400 m of a training event (a dilation of the training counts)
    near = fc.ew_kde_forecast(train, cells, decay=1.0, bandwidth=0.0).reshape(cells.shape) > 0
    r = max(1, round(400.0 / cell))
    dil = np.zeros_like(near)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= r * r:
                dil |= np.roll(np.roll(near, dy, axis=0), dx, axis=1)
    mask = dil.ravel()
    print(f"\nWest Yorkshire (police.uk, crime-sim-toolkit): months {', '.join(keys)} "
          f"({', '.join(str(len(ll[k])) for k in keys)} crimes with coordinates); NOTE: the same month in three "
          f"years, not consecutive months; raster {cells.nx} x {cells.ny} of {cell:.0f} m, study area "
          f"{int(mask.sum())} cells ({mask.sum() * cell * cell / 1e6:.0f} km2)")
    rows = {keys[2]: evaluate(train, xy[keys[2]], cells, mask)}
    mean = print_table(f"West Yorkshire: held-out {keys[2]}, forecast from {keys[0]} and {keys[1]}", rows)
    return {"source": "crime-sim-toolkit tests/testing_data/test_policedata (police.uk street crime)",
            "files": [f.name for f in west_yorkshire_files()], "months": keys, "cell_m": cell,
            "held_out": rows, "mean": mean}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cell", type=float, default=200.0, help="cell size in metres")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    t0 = time.perf_counter()
    print(f"forecast_pai: python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs; "
          f"candidates decay {DECAYS} x bandwidth {BANDWIDTHS} m")
    date = datetime.now(UTC).isoformat(timespec="seconds")
    results: dict[str, Any] = {"demo_city": run_demo(args.seed, args.cell),
                               "west_yorkshire": run_west_yorkshire(args.cell)}
    verdicts = []
    for name, r in results.items():
        if "mean" in r:
            ok = r["mean"]["forecast_pai@5%"] >= r["mean"]["naive_pai@5%"]
            verdicts.append(ok)
            print(f"{name}: mean PAI@5% forecast {r['mean']['forecast_pai@5%']:.3f} vs naive "
                  f"{r['mean']['naive_pai@5%']:.3f} -> {'ok' if ok else 'LOSES'}")
        else:
            print(f"{name}: not evaluated ({r.get('skipped')})")
    passed = bool(verdicts) and all(verdicts) and len(verdicts) == len(results)
    line = f"{'PASS' if passed else 'FAIL'}: forecast does not lose to naive (mean PAI@5% on each dataset)"
    print(line)
    total = time.perf_counter() - t0
    print(f"total {total:.1f} s")
    results.update({"date": date, "cpu_count": os.cpu_count(), "pass": passed, "verdict": line,
                    "total_seconds": round(total, 1)})
    if args.json is not None:
        merge_json(args.json, "forecast_pai", results)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
