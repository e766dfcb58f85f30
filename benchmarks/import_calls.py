"""Benchmark: ``shiyu analysis import-calls`` of 100,000 police calls 警情 from one CSV file.

Usage::

    python benchmarks/import_calls.py [--rows 100000] [--db postgres|sqlite] [--methods executemany,copy]
                                      [--profile PATH] [--json PATH]

Set-up, all inside the script: a fresh database (PostgreSQL at ``--pg``, default
``postgres@127.0.0.1:5432`` with trust auth; or a SQLite file with ``--db sqlite``), migrated and seeded
with ``shiyu.dbadmin.upgrade``, the small demo city loaded with ``load_city``, then one CSV file of
``--rows`` calls in the column layout of ``docs/police-calls-import.md`` (caller name and phone columns
included, empty; they are never read): points inside the demo's unified grids, 2% placed by unit code
only (no point), 20% non-police calls 非警务警情, 1% bad rows (bad time, missing id, lon out of range,
outside every grid without a unit) and 1% repeated source ids.

Measured in the same run, on the same file and each time from an empty ``police_records`` table
(``VACUUM ANALYZE`` before every import), with ``import_calls(..., method=...)`` in one unit of work as
``shiyu analysis import-calls`` runs it (commit included):

* baseline ``executemany``: the original path, per batch of 2,000 rows an ``IN (...)`` look-up of the
  stored source ids, then ``INSERT`` executemany (the only path on SQLite);
* ``copy`` (PostgreSQL only, the default there): one ``= ANY(array)`` look-up per 20,000 source ids
  before anything is written, then psycopg ``COPY police_records (...) FROM STDIN`` on the session's
  connection, inside the same transaction;
* for each method, a second import of the same file (every good row a duplicate) over the stored rows.

The rows each method stored are compared column by column. With ``--json PATH`` the figures are merged
into that JSON file under ``"import_calls"`` (``"import_calls_sqlite"`` for ``--db sqlite``).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Cheap password hashing while loading the demo users: they play no part in the import.
os.environ.setdefault("SHIYU_ARGON2_TIME_COST", "1")
os.environ.setdefault("SHIYU_ARGON2_MEMORY_KIB", "8192")

import shapely  # noqa: E402
from sqlalchemy import delete, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

try:
    from shiyu.kit.db import Database
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from shiyu.kit.db import Database

from shiyu.config import get_settings  # noqa: E402
from shiyu.dbadmin import create_database, drop_database, upgrade  # noqa: E402
from shiyu.demo.city import generate_city  # noqa: E402
from shiyu.demo.load import load_city  # noqa: E402
from shiyu.domains.analysis import calls  # noqa: E402
from shiyu.domains.analysis.models import PoliceRecord  # noqa: E402
from shiyu.kit.figures import merge_json  # noqa: E402
from shiyu.platform.authz.principal import Principal  # noqa: E402

get_settings.cache_clear()

TARGET_ROWS = 100_000
SOURCE = "bench-110"
P_UNIT_ONLY, P_NON_POLICE, P_BAD, P_DUPLICATE = 0.02, 0.20, 0.01, 0.01
HEADER = "jqbh,bjsj,jqlb,jqlbmc,x,y,sscode,sfjq,bjrxm,bjrdh\n"
MAPPING = {
    "source": {"name": SOURCE, "stream": "call", "format": "csv", "timezone": "Asia/Shanghai",
               "datetime_format": "%Y-%m-%d %H:%M:%S"},
    "columns": {"source_id": "jqbh", "occurred_at": "bjsj", "category": "jqlb", "category_name": "jqlbmc",
                "lon": "x", "lat": "y", "unit": "sscode", "is_police": "sfjq", "true_values": ["1", "是", "Y"]},
}
CATEGORIES = [("0101", "盗窃"), ("0102", "诈骗"), ("0201", "交通事故"), ("0301", "求助"), ("0401", "噪音扰民"),
              ("0501", "纠纷"), ("0601", "火警"), ("0701", "咨询")]
STORED = (PoliceRecord.source_id, PoliceRecord.stream, PoliceRecord.occurred_at, PoliceRecord.category,
          PoliceRecord.category_name, PoliceRecord.lon, PoliceRecord.lat, PoliceRecord.grid_code,
          PoliceRecord.unit_code, PoliceRecord.scope_path, PoliceRecord.is_police, PoliceRecord.diverted_item_id)


# --------------------------------------------------------------------------- data


def write_csv(path: Path, n: int, seed: int) -> dict[str, int]:
    """The CSV file of ``n`` data rows; returns the mix generated (what the import should report)."""
    rng = random.Random(seed)
    city = generate_city("small", seed)
    places: list[tuple[str, list[tuple[float, float]]]] = []
    for g in city.grids:
        pts: list[tuple[float, float]] = []
        minx, miny, maxx, maxy = g.polygon.bounds
        while len(pts) < 16:
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if shapely.contains_xy(g.polygon, x, y):
                pts.append((round(x, 7), round(y, 7)))
        places.append((g.village_code, pts))
    start = dt.datetime(2026, 1, 1)
    mix = {"rows": n, "good": 0, "bad": 0, "duplicates": 0, "unit_only": 0, "non_police": 0}
    ids: list[str] = []
    out = [HEADER]
    for i in range(n):
        r = rng.random()
        when = (start + dt.timedelta(seconds=rng.randrange(330 * 86400))).strftime("%Y-%m-%d %H:%M:%S")
        code, name = rng.choice(CATEGORIES)
        village, pts = rng.choice(places)
        x, y = rng.choice(pts)
        flag = "0" if rng.random() < P_NON_POLICE else "1"
        sid = f"J{seed:02d}{i:09d}"
        unit = ""
        if r < P_BAD:
            mix["bad"] += 1
            kind = i % 4
            if kind == 0:
                when = "2026-13-01 08:00:00"
            elif kind == 1:
                sid = ""
            elif kind == 2:
                x = 200.5
            else:
                x, y = 0.5, 0.5  # outside every grid, no unit
        elif r < P_BAD + P_DUPLICATE and ids:
            mix["duplicates"] += 1
            sid = rng.choice(ids)
        else:
            mix["good"] += 1
            mix["non_police"] += flag == "0"
            ids.append(sid)
            if rng.random() < P_UNIT_ONLY:
                mix["unit_only"] += 1
                x_s, y_s, unit = "", "", village
        x_s, y_s = ("", "") if unit else (str(x), str(y))
        out.append(f"{sid},{when},{code},{name},{x_s},{y_s},{unit},{flag},,\n")
    path.write_text("".join(out), encoding="utf-8")
    return mix


# --------------------------------------------------------------------------- measurements


def vacuum_analyze(db: Database) -> None:
    if db.sqlite:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) police_records")


def clear(db: Database) -> None:
    with db.unit_of_work() as session:
        session.execute(delete(PoliceRecord).where(PoliceRecord.source == SOURCE))
    vacuum_analyze(db)


def stored(db: Database) -> list[tuple[Any, ...]]:
    with db.unit_of_work(write=False) as session:
        return [tuple(r) for r in session.execute(select(*STORED).where(PoliceRecord.source == SOURCE)
                                                  .order_by(PoliceRecord.source_id))]


def run_import(db: Database, csv: Path, mapping: calls.CallMapping, method: str,
               profile: Path | None = None) -> tuple[dict[str, Any], calls.ImportResult, str | None]:
    """One import in one unit of work, timed in phases by its progress callback: parse and locate
    (until the progress after locating), look up and store, commit."""
    marks: list[tuple[float, int]] = []
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    with db.unit_of_work() as session:
        result = calls.import_calls(session, Principal.system("bench"), csv, mapping, method=method,  # type: ignore[arg-type]
                                    progress=lambda done, total: marks.append((time.perf_counter(), done)))
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    hot = None
    if prof:
        prof.disable()
        assert profile is not None
        prof.dump_stats(profile)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
        hot = buf.getvalue()
    located_at = marks[1][0] if len(marks) > 1 else t1
    seconds = t2 - t0
    return {
        "seconds": round(seconds, 3),
        "rows_per_second": round(result.total / seconds) if seconds else None,
        "parse_locate_seconds": round(located_at - t0, 3),
        "lookup_store_seconds": round(t1 - located_at, 3),
        "commit_seconds": round(t2 - t1, 3),
        "created": result.created, "duplicates_skipped": result.duplicates_skipped, "bad_rows": len(result.bad_rows),
        "progress_calls": len(marks), "profiled": prof is not None,
    }, result, hot


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=TARGET_ROWS)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="URL of the PostgreSQL maintenance database (a fresh database is created beside it)")
    parser.add_argument("--dbname", default="shiyu_bench_calls")
    parser.add_argument("--methods", default=None,
                        help="comma-separated import methods, baseline first (default: executemany,copy on "
                             "PostgreSQL, executemany on SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, metavar="PATH",
                        help="cProfile the first import of the last method, dump the stats to PATH and print the "
                             "hot spots")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)

    methods = (args.methods.split(",") if args.methods else
               ["executemany", "copy"] if args.db == "postgres" else ["executemany"])
    if args.db == "sqlite" and "copy" in methods:
        parser.error("the copy method needs PostgreSQL")
    started = dt.datetime.now(dt.UTC)
    t_all = time.perf_counter()
    admin_url = make_url(args.pg)
    tmp = Path(tempfile.mkdtemp(prefix="shiyu-bench-calls-"))
    if args.db == "sqlite":
        url_s = f"sqlite:///{tmp / 'bench.db'}"
    else:
        create_database(admin_url, args.dbname)
        url_s = admin_url.set(database=args.dbname).render_as_string(hide_password=False)
    db: Database | None = None
    ok = False
    try:
        db = Database(url_s)
        t0 = time.perf_counter()
        upgrade(db)
        with db.unit_of_work() as session:
            load = load_city(session, generate_city("small", args.seed))
        setup_s = time.perf_counter() - t0
        csv = tmp / "calls.csv"
        t0 = time.perf_counter()
        mix = write_csv(csv, args.rows, args.seed)
        gen_s = time.perf_counter() - t0
        mapping = calls.parse_mapping(MAPPING)
        print(f"setup: {args.db}{'' if db.sqlite else ' ' + args.dbname}; migrate + seed + small demo city in "
              f"{setup_s:.1f} s ({load}); CSV of {args.rows:,} rows ({csv.stat().st_size / 1e6:.1f} MB) written "
              f"in {gen_s:.1f} s; mix {mix}", flush=True)

        runs: dict[str, dict[str, Any]] = {}
        snapshots: dict[str, list[tuple[Any, ...]]] = {}
        results: dict[str, calls.ImportResult] = {}
        hot = None
        for i, method in enumerate(methods):
            clear(db)
            profile = args.profile if args.profile and i == len(methods) - 1 else None
            first, res, hot_m = run_import(db, csv, mapping, method, profile)
            hot = hot_m or hot
            snapshots[method] = stored(db)
            results[method] = res
            vacuum_analyze(db)
            again, _, _ = run_import(db, csv, mapping, method)
            runs[method] = {"first_import": first, "reimport": again}
            f = first
            print(f"{method:>12}: {f['seconds']:.2f} s, {f['rows_per_second']:,} rows/s (parse + locate "
                  f"{f['parse_locate_seconds']:.2f} s, look up + store {f['lookup_store_seconds']:.2f} s, commit "
                  f"{f['commit_seconds']:.2f} s): created {f['created']:,}, duplicates {f['duplicates_skipped']:,}, "
                  f"bad rows {f['bad_rows']:,}" + (" [under cProfile]" if f["profiled"] else ""), flush=True)
            print(f"{'':>12}  re-import of the same file: {again['seconds']:.2f} s, {again['rows_per_second']:,} "
                  f"rows/s: created {again['created']}, duplicates {again['duplicates_skipped']:,}", flush=True)
        if hot:
            print(hot)

        problems = []
        expect = (mix["good"], mix["duplicates"], mix["bad"])
        for method, run in runs.items():
            f, a = run["first_import"], run["reimport"]
            if (f["created"], f["duplicates_skipped"], f["bad_rows"]) != expect:
                problems.append(f"{method}: created/duplicates/bad {f['created']}/{f['duplicates_skipped']}/"
                                f"{f['bad_rows']}, generated {expect}")
            if a["created"] != 0 or a["duplicates_skipped"] != mix["good"] + mix["duplicates"]:
                problems.append(f"{method}: the re-import created {a['created']} rows")
        base = methods[0]
        for method in methods[1:]:
            if snapshots[method] != snapshots[base]:
                diff = sum(1 for a, b in zip(snapshots[method], snapshots[base], strict=False) if a != b)
                problems.append(f"{method} stored other rows than {base}: {len(snapshots[method])} against "
                                f"{len(snapshots[base])}, {diff} differing")
            if results[method].bad_rows != results[base].bad_rows:
                problems.append(f"{method} reported other bad rows than {base}")
        ratios = {}
        for method in methods[1:]:
            b, m = runs[base]["first_import"], runs[method]["first_import"]
            ratios[f"{method}_over_{base}_rows_per_second"] = round(m["rows_per_second"] / b["rows_per_second"], 1)
            ratios[f"{method}_over_{base}_reimport_rows_per_second"] = round(
                runs[method]["reimport"]["rows_per_second"] / runs[base]["reimport"]["rows_per_second"], 1)
        figures = {
            "date": started.isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "load_average_at_start": list(os.getloadavg()),
                        "database": _db_version(db)},
            "backend": args.db,
            "data": {"city": f"small demo city (seed {args.seed})", "grids": load.grids, "file_rows": args.rows,
                     "file_bytes": csv.stat().st_size, "mix": mix, "batch_size": calls.BATCH_SIZE},
            "baseline": base,
            "methods": runs,
            "ratios": ratios,
            "problems": problems,
            "setup_seconds": round(setup_s, 1),
            "total_seconds": round(time.perf_counter() - t_all, 1),
        }
        print()
        print(f"import_calls | {figures['date']} | os.cpu_count() = {figures['cpu_count']} | {args.db} | "
              f"{args.rows:,} rows")
        for method in methods:
            f = runs[method]["first_import"]
            line = f"  {method}: {f['seconds']:.2f} s, {f['rows_per_second']:,} rows/s"
            if method != base:
                line += (f" -> x{ratios[f'{method}_over_{base}_rows_per_second']} the {base} baseline "
                         f"(re-import x{ratios[f'{method}_over_{base}_reimport_rows_per_second']})")
            print(line)
        if args.json is not None:
            merge_json(args.json, "import_calls" if args.db == "postgres" else "import_calls_sqlite", figures)
        for p in problems:
            print(f"PROBLEM: {p}")
        ok = not problems
    finally:
        if db is not None:
            db.dispose()
        if args.db == "postgres" and not args.keep_db:
            drop_database(admin_url, args.dbname)
        if not args.keep_db:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {url_s} and {tmp}")
    return 0 if ok else 1


def _db_version(db: Database) -> str:
    with db.engine.connect() as conn:
        if db.sqlite:
            return "SQLite " + str(conn.exec_driver_sql("select sqlite_version()").scalar_one())
        return "PostgreSQL " + str(conn.exec_driver_sql("SHOW server_version").scalar_one())


if __name__ == "__main__":
    raise SystemExit(main())
