"""Benchmark: the monthly analysis report 一分析三报告 over 10,000,000 police calls 警情 and the medium city.

Usage::

    python benchmarks/report_10m.py [--rows 10000000] [--size medium] [--keep DIR] [--repeat 5] [--seed 1]
                                    [--now ISO] [--profile PATH] [--json PATH]

Set-up (in ``--keep DIR``, reused on the next run when it holds a dataset of the same rows, size and
seed; in a temporary folder otherwise):

* ``medium.db``: a SQLite database migrated with ``shiyu.dbadmin.upgrade`` and loaded with
  ``shiyu.demo.load.load_demo(session, size, seed, now=NOW)``: the city (~3,000 unified grids), its
  history of ~200,000 work items and its 400,000 demo police records, all ending at ``NOW``;
* the Parquet snapshot ``olap.export_parquet`` writes of that database (``work_items.parquet``),
  whose ``police_records.parquet`` is then replaced by ``--rows`` records from
  ``shiyu.demo.calls.generate_calls(city, n=rows, months=36)`` written directly with pyarrow
  (the ``olap.CALL_SCHEMA`` columns, sorted by ``occurred_at``, row groups of 1,000,000, zstd):
  the 10,000,000 calls are never inserted into the database.

Measured, for the city and the last complete month before ``NOW`` (local time):

* end to end, ``--repeat`` times: ``build_report(session, Principal.system("bench"), unit_code=<city>,
  period=..., snapshot=DIR)`` + ``grid_shapes`` + ``render.render_pdf(report, audience="police",
  shapes=...)``; target < 30 s. Each run is split into the DuckDB part (views and queries), Gi*,
  early warnings, the rest of ``build_report``, the grid shapes and the PDF;
* the aggregation step: the ``Olap`` calls ``build_report`` makes (``from_parquet``, ``stream_counts``,
  ``kind_counts``, ``category_counts``, ``call_category_names(windows)``, ``rates``, ``by_child``, ``daily`` and the
  grid count query) against the baseline measured in the same run, one bare hand-written DuckDB query
  over the same two Parquet files computing the same counts in one scan (``GROUPING SETS``: streams x 3
  windows, categories x windows, per township x windows, per day of the month, per grid); target: the
  median of the Olap step within 3x the median of the bare query. The bare query's counts must equal
  the Olap ones (streams, categories, townships, days and grids), or the run fails. The category names
  are read over the three windows, as ``build_report`` does.

With ``--json PATH`` the figures are merged into that JSON file under ``"report_10m"``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Cheap password hashing while loading the demo users: they play no part in the report.
os.environ.setdefault("SHIYU_ARGON2_TIME_COST", "1")
os.environ.setdefault("SHIYU_ARGON2_MEMORY_KIB", "8192")

import duckdb  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

try:
    from shiyu.kit.db import Database
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from shiyu.kit.db import Database

from shiyu.config import get_settings  # noqa: E402
from shiyu.dbadmin import upgrade  # noqa: E402
from shiyu.demo.calls import generate_calls  # noqa: E402
from shiyu.demo.city import CITY_CODE, generate_city  # noqa: E402
from shiyu.demo.load import load_demo  # noqa: E402
from shiyu.domains.analysis import hotspots as hs  # noqa: E402
from shiyu.domains.analysis import olap as olap_mod  # noqa: E402
from shiyu.domains.analysis import warnings as ew  # noqa: E402
from shiyu.domains.analysis.models import PoliceRecord  # noqa: E402
from shiyu.domains.analysis.olap import CALL_SCHEMA, CALLS_FILE, ITEMS_FILE, SEGMENT, Olap, Window  # noqa: E402
from shiyu.domains.items.models import WorkItem  # noqa: E402
from shiyu.domains.reports.service import RANK_LEVEL, build_report, grid_shapes, periods  # noqa: E402
from shiyu.kit.figures import merge_json  # noqa: E402
from shiyu.platform.authz.principal import Principal  # noqa: E402
from shiyu.platform.units.models import Unit  # noqa: E402
from shiyu.platform.workflow.calendar import LOCAL_TZ  # noqa: E402

get_settings.cache_clear()

TARGET_SECONDS = 30.0
TARGET_RATIO = 3.0
MONTHS = 36
ROW_GROUP = 1_000_000
DB_FILE = "medium.db"
INFO_FILE = "bench.json"
#: The grid count query of ``build_report`` (``reports/service.py``), verbatim.
GRID_SQL = """
            SELECT grid_code, count(*) FROM (
                SELECT grid_code, created_at AS t FROM items UNION ALL SELECT grid_code, occurred_at FROM calls)
            WHERE grid_code IS NOT NULL AND t >= ? AND t < ? GROUP BY ALL"""


# --------------------------------------------------------------------------- set-up


def build(d: Path, *, rows: int, size: str, seed: int, now: dt.datetime) -> dict[str, Any]:
    """The database, the items snapshot and the ``rows`` calls in ``d``; reused when present."""
    info_path = d / INFO_FILE
    if info_path.exists():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        same = (info.get("rows"), info.get("size"), info.get("seed")) == (rows, size, seed)
        files = all((d / f).exists() for f in (DB_FILE, ITEMS_FILE, CALLS_FILE))
        if same and files and pq.ParquetFile(d / CALLS_FILE).metadata.num_rows == rows:
            print(f"reusing the dataset in {d} (built {info['built_at']}, now {info['now']})", flush=True)
            info["reused"] = True
            return info
        print(f"{d} holds another dataset: rebuilding it", flush=True)
    d.mkdir(parents=True, exist_ok=True)
    for f in (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", ITEMS_FILE, CALLS_FILE, INFO_FILE):
        (d / f).unlink(missing_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    db = Database(f"sqlite:///{d / DB_FILE}")
    upgrade(db)
    with db.unit_of_work() as session:
        load = load_demo(session, size, seed, now=now)
    timings["load_demo_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{size} demo city loaded in {timings['load_demo_seconds']:.0f} s: {load}", flush=True)

    t0 = time.perf_counter()
    with db.unit_of_work(write=False) as session:
        snap = olap_mod.export_parquet(session, d)
    db.dispose()
    timings["export_parquet_seconds"] = round(time.perf_counter() - t0, 1)
    print(f"snapshot written in {timings['export_parquet_seconds']:.0f} s: {snap}", flush=True)

    t0 = time.perf_counter()
    city = generate_city(size, seed)
    timings["generate_city_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    table = generate_calls(city, n=rows, months=MONTHS, seed=seed, now=now)
    gen_s = time.perf_counter() - t0
    timings["generate_calls_seconds"] = round(gen_s, 1)
    t0 = time.perf_counter()
    tmp = d / (CALLS_FILE + ".tmp")
    pq.write_table(table.select(CALL_SCHEMA.names).cast(CALL_SCHEMA), tmp, row_group_size=ROW_GROUP,
                   compression="zstd")
    tmp.replace(d / CALLS_FILE)
    timings["write_parquet_seconds"] = round(time.perf_counter() - t0, 1)
    del table
    print(f"{rows:,} calls generated in {gen_s:.1f} s ({rows / gen_s:,.0f} rows/s), written in "
          f"{timings['write_parquet_seconds']:.1f} s", flush=True)
    info = {"rows": rows, "size": size, "seed": seed, "months": MONTHS, "now": now.isoformat(),
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "load": str(load),
            "db_calls": load.calls, "timings": timings, "generate_rows_per_second": round(rows / gen_s)}
    info_path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    info["reused"] = False
    return info


def last_complete_month(now: dt.datetime) -> str:
    local = now.astimezone(LOCAL_TZ)
    y, m = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{y:04d}-{m:02d}"


# --------------------------------------------------------------------------- timing helpers


class Timers:
    """Wall time spent inside some functions, by name (patched in for the measurement only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return timed

    @contextmanager
    def patched(self) -> Iterator[Timers]:
        from_parquet = Olap.__dict__["from_parquet"]
        query = Olap.__dict__["query"]
        originals = [(Olap, "from_parquet", from_parquet), (Olap, "query", query),
                     (hs, "counts_hotspots", hs.counts_hotspots), (ew, "all_warnings", ew.all_warnings)]
        Olap.from_parquet = classmethod(self.wrap("duckdb views", from_parquet.__func__))  # type: ignore[method-assign]
        Olap.query = self.wrap("duckdb queries", query)  # type: ignore[method-assign]
        if "_call_counts" in Olap.__dict__:  # the shared scan of the calls, run outside ``query``
            originals.append((Olap, "_call_counts", Olap.__dict__["_call_counts"]))
            Olap._call_counts = self.wrap("duckdb queries", Olap.__dict__["_call_counts"])  # type: ignore[method-assign]
        hs.counts_hotspots = self.wrap("gi* hot spots", hs.counts_hotspots)
        ew.all_warnings = self.wrap("early warnings", ew.all_warnings)
        try:
            yield self
        finally:
            for obj, name, orig in originals:
                setattr(obj, name, orig)


# --------------------------------------------------------------------------- measurements


def end_to_end(db: Database, d: Path, period: str, now: dt.datetime, profile: Path | None = None
               ) -> tuple[dict[str, Any], str | None]:
    from shiyu.domains.reports import render

    timers = Timers()
    prof = cProfile.Profile() if profile else None
    with timers.patched():
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        with db.unit_of_work(write=False) as session:
            principal = Principal.system("bench")
            report = build_report(session, principal, unit_code=CITY_CODE, period=period, snapshot=d, now=now)
            t1 = time.perf_counter()
            shapes = grid_shapes(session, principal, report)
            t2 = time.perf_counter()
        pdf = render.render_pdf(report, audience="police", shapes=shapes)
        t3 = time.perf_counter()
        if prof:
            prof.disable()
    hot = None
    if prof:
        assert profile is not None
        prof.dump_stats(profile)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(35)
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
        hot = buf.getvalue()
    s = timers.seconds
    parts = {"duckdb_views": s.get("duckdb views", 0.0), "duckdb_queries": s.get("duckdb queries", 0.0),
             "gi_star": s.get("gi* hot spots", 0.0), "warnings": s.get("early warnings", 0.0)}
    parts["build_report_rest"] = (t1 - t0) - sum(parts.values())
    parts["grid_shapes"] = t2 - t1
    parts["render_pdf"] = t3 - t2
    streams = {r["stream"]: r["current"] for r in report["streams"]}
    return {"seconds": round(t3 - t0, 2), "build_report_seconds": round(t1 - t0, 2),
            "parts": {k: round(v, 2) for k, v in parts.items()}, "pdf_bytes": len(pdf),
            "streams_current": streams, "hot_grids": report["hotspots"].get("hot"),
            "profiled": prof is not None}, hot


def olap_step(d: Path, root: str, windows: tuple[Window, Window, Window], prefix_len: int,
              overdue_at: dt.datetime) -> tuple[float, dict[str, float], dict[str, Any]]:
    """The Olap calls of ``build_report``, in its order, each timed."""
    cur = windows[0]
    each: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        each[name] = each.get(name, 0.0) + time.perf_counter() - t
        return out

    t0 = time.perf_counter()
    olap = timed("from_parquet", lambda: Olap.from_parquet(d, Principal.system("bench"), root_path=root))
    with olap:
        got = {
            "streams": timed("stream_counts", lambda: olap.stream_counts(windows)),
            "kinds": timed("kind_counts", lambda: olap.kind_counts(windows)),
            "categories": timed("category_counts", lambda: olap.category_counts(windows)),
            "names": timed("call_category_names", lambda: olap.call_category_names(windows)),
            "rates": timed("rates", lambda: olap.rates(windows)),
            "children": timed("by_child", lambda: olap.by_child(windows, prefix_len, overdue_at)),
            "daily": timed("daily", lambda: olap.daily(cur)),
            "grids": timed("grid counts", lambda: dict(olap.query(GRID_SQL, [cur.start_utc, cur.end_utc]))),
        }
        total = time.perf_counter() - t0
    return total, each, got


def _ts(t: dt.datetime) -> str:
    return f"TIMESTAMP '{t.isoformat(sep=' ')}'"


def bare_sql(d: Path, windows: tuple[Window, Window, Window], prefix_len: int) -> str:
    cur, prev, ly = windows
    cs, ce, ps, pe, ls, le = (_ts(x) for x in (cur.start_utc, cur.end_utc, prev.start_utc, prev.end_utc,
                                               ly.start_utc, ly.end_utc))
    items, calls = (str(d / f).replace("'", "''") for f in (ITEMS_FILE, CALLS_FILE))
    return f"""
        WITH s AS (
            SELECT CASE WHEN kind = 'hotline' THEN 'opinion' ELSE 'social' END AS stream, 'item' AS cstream,
                   coalesce(category_code, '') AS category, 'items' AS what, scope_path, grid_code, created_at AS t
            FROM read_parquet('{items}') WHERE status <> 'merged'
            UNION ALL
            SELECT stream, stream, category, CASE WHEN stream = 'call' THEN 'calls' ELSE 'cases' END, scope_path,
                   grid_code, occurred_at
            FROM read_parquet('{calls}')),
        w AS (
            SELECT *, CASE WHEN t >= {cs} AND t < {ce} THEN 'current'
                           WHEN t >= {ps} AND t < {pe} THEN 'previous' ELSE 'last_year' END AS win
            FROM s WHERE (t >= {cs} AND t < {ce}) OR (t >= {ps} AND t < {pe}) OR (t >= {ls} AND t < {le}))
        SELECT GROUPING(win, stream, cstream, category, child, what, day, grid_code) AS g,
               win, stream, cstream, category, child, what, day, grid_code, count(*) AS n
        FROM (SELECT *, CASE WHEN length(scope_path) >= {prefix_len} THEN substr(scope_path, 1, {prefix_len}) END
                          AS child,
                     CASE WHEN win = 'current' THEN CAST(CAST(t + INTERVAL 8 HOUR AS DATE) AS VARCHAR) END AS day
              FROM w)
        GROUP BY GROUPING SETS ((win, stream), (win, cstream, category), (win, child, what), (win, day, stream),
                                (win, grid_code))"""


def bare(sql: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    con = duckdb.connect()
    rows = con.execute(sql).fetchall()
    con.close()
    secs = time.perf_counter() - t0
    out: dict[str, Any] = {"streams": {}, "categories": {}, "children": {}, "daily": {}, "grids": {}}
    # GROUPING(): one bit per column, most significant first, set when the column is not grouped on
    cols = ("win", "stream", "cstream", "category", "child", "what", "day", "grid_code")
    sets = {sum(1 << (len(cols) - 1 - i) for i, c in enumerate(cols) if c not in grouped): name
            for name, grouped in (("streams", {"win", "stream"}), ("categories", {"win", "cstream", "category"}),
                                  ("children", {"win", "child", "what"}), ("daily", {"win", "day", "stream"}),
                                  ("grids", {"win", "grid_code"}))}
    for g, win, stream, cstream, category, child, what, day, grid, n in rows:
        kind = sets[g]
        if kind == "streams":
            out["streams"][(win, stream)] = n
        elif kind == "categories":
            out["categories"][(win, cstream, category)] = n
        elif kind == "children" and child is not None:
            out["children"].setdefault(child, {})[f"{what}:{win}"] = n
        elif kind == "daily" and win == "current":
            out["daily"][(day, stream)] = n
        elif kind == "grids" and win == "current" and grid is not None:
            out["grids"][grid] = n
    return secs, out


def compare(olap: dict[str, Any], base: dict[str, Any]) -> list[str]:
    problems = []
    children = {c: {k: v for k, v in kv.items() if k != "overdue"} for c, kv in olap["children"].items()}
    children = {c: kv for c, kv in children.items() if kv}
    for name, a, b in (("stream counts", olap["streams"], base["streams"]),
                       ("category counts", olap["categories"], base["categories"]),
                       ("township counts", children, base["children"]),
                       ("daily counts", olap["daily"], base["daily"]),
                       ("grid counts", olap["grids"], base["grids"])):
        if a != b:
            diff = sorted(set(a.items()) ^ set(b.items()), key=str)[:5] if name != "township counts" else \
                [(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)][:3]
            problems.append(f"{name} differ between the Olap step and the bare query, e.g. {diff}")
    return problems


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--size", choices=("small", "medium"), default="medium")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="build the dataset in DIR and keep it; reuse it when DIR already holds it")
    parser.add_argument("--now", default=None, help="ISO 8601 end of the data with a zone (default: now; "
                                                    "a reused dataset keeps its own)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each measurement")
    parser.add_argument("--profile", type=Path, default=None, metavar="PATH",
                        help="cProfile the first end-to-end run, dump the stats to PATH and print the hot spots")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)

    if args.now:
        now = dt.datetime.fromisoformat(args.now)
        if now.tzinfo is None:
            parser.error("--now needs a time zone")
    else:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = dt.datetime.now(dt.UTC)
    t_all = time.perf_counter()
    d = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="shiyu-bench-report-"))
    ok = False
    try:
        info = build(d, rows=args.rows, size=args.size, seed=args.seed, now=now)
        now = dt.datetime.fromisoformat(info["now"])
        period = last_complete_month(now)
        windows = periods(period)
        db = Database(f"sqlite:///{d / DB_FILE}")
        with db.unit_of_work(write=False) as session:
            city = session.execute(select(Unit).where(Unit.code == CITY_CODE)).scalar_one()
            root, level = city.path, city.level
            n_items = session.execute(select(func.count()).select_from(WorkItem)).scalar_one()
            n_db_calls = session.execute(select(func.count()).select_from(PoliceRecord)).scalar_one()
            n_grids = len(hs.unit_grids(session, Principal.system("bench"), unit_path=root, action="analysis.read"))
        prefix_len = len(root) + SEGMENT * (RANK_LEVEL[level] - level)
        overdue_at = min(windows[0].end, now)
        calls_mb = (d / CALLS_FILE).stat().st_size / 1e6
        items_mb = (d / ITEMS_FILE).stat().st_size / 1e6
        print(f"data: {args.rows:,} calls in {calls_mb:.0f} MB Parquet, {n_items:,} items ({items_mb:.0f} MB), "
              f"{n_grids:,} unified grids; period {period}, now {now.isoformat()}", flush=True)

        # (a) end to end
        runs = []
        hot = None
        for i in range(args.repeat):
            run, h = end_to_end(db, d, period, now, args.profile if i == 0 else None)
            hot = hot or h
            runs.append(run)
            p = run["parts"]
            print(f"end to end run {i + 1}: {run['seconds']:.2f} s = build_report {run['build_report_seconds']:.2f} s "
                  f"(duckdb views {p['duckdb_views']:.2f} + queries {p['duckdb_queries']:.2f}, Gi* {p['gi_star']:.2f}, "
                  f"warnings {p['warnings']:.2f}, rest {p['build_report_rest']:.2f}) + grid shapes "
                  f"{p['grid_shapes']:.2f} s + PDF {p['render_pdf']:.2f} s ({run['pdf_bytes'] / 1e3:.0f} kB)"
                  + (" [under cProfile]" if run["profiled"] else ""), flush=True)
        if hot:
            print(hot)
        db.dispose()

        # (b) the aggregation step against the bare query, alternating
        sql = bare_sql(d, windows, prefix_len)
        olap_times, bare_times = [], []
        per_query: dict[str, list[float]] = {}
        olap_got: dict[str, Any] = {}
        base_got: dict[str, Any] = {}
        for _ in range(args.repeat):
            secs, each, olap_got = olap_step(d, root, windows, prefix_len, overdue_at)
            olap_times.append(secs)
            for k, v in each.items():
                per_query.setdefault(k, []).append(v)
            secs, base_got = bare(sql)
            bare_times.append(secs)
        olap_med, bare_med = statistics.median(olap_times), statistics.median(bare_times)
        ratio = olap_med / bare_med
        med = {k: statistics.median(v) for k, v in per_query.items()}
        problems = compare(olap_got, base_got)
        e2e_worst = max(r["seconds"] for r in runs)
        e2e_med = statistics.median(r["seconds"] for r in runs)
        e2e_ok = e2e_worst < TARGET_SECONDS
        ratio_ok = ratio <= TARGET_RATIO
        cur_calls = sum(n for (w, s), n in base_got["streams"].items() if w == "current" and s in ("call", "case"))

        print()
        print(f"report_10m | {started.isoformat(timespec='seconds')} | os.cpu_count() = {os.cpu_count()} | "
              f"duckdb {duckdb.__version__} | {args.rows:,} calls ({calls_mb:.0f} MB) + {n_items:,} items, "
              f"{args.size} city ({n_grids:,} grids) | period {period} ({cur_calls:,} calls and cases)")
        print(f"  end to end (build_report + grid shapes + PDF): median {e2e_med:.2f} s, worst {e2e_worst:.2f} s "
              f"of {len(runs)} -> target < {TARGET_SECONDS:.0f} s: {'PASS' if e2e_ok else 'FAIL'}")
        print(f"  aggregation step (Olap calls of build_report): median {olap_med:.3f} s; bare DuckDB GROUPING SETS "
              f"query (same counts, one scan): median {bare_med:.3f} s -> x{ratio:.2f} the bare query, target "
              f"<= x{TARGET_RATIO:.0f}: {'PASS' if ratio_ok else 'FAIL'}")
        print("  per Olap call (median s): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
        print(f"  counts of the bare query equal the Olap ones (streams, categories, townships, days, grids): "
              f"{'yes' if not problems else 'NO'}")
        results = {
            "date": started.isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "duckdb": duckdb.__version__,
                        "load_average_at_start": list(os.getloadavg())},
            "data": {"calls": args.rows, "calls_parquet_mb": round(calls_mb, 1), "items": n_items,
                     "items_parquet_mb": round(items_mb, 1), "db_police_records": n_db_calls, "grids": n_grids,
                     "size": args.size, "seed": args.seed, "months": MONTHS, "now": now.isoformat(),
                     "period": period, "period_calls_and_cases": cur_calls, "build": info},
            "end_to_end": {"runs": runs, "median_seconds": round(e2e_med, 2), "worst_seconds": round(e2e_worst, 2),
                           "target_seconds": TARGET_SECONDS, "pass": e2e_ok},
            "aggregation": {"olap_seconds": [round(x, 3) for x in olap_times],
                            "bare_seconds": [round(x, 3) for x in bare_times],
                            "olap_median_seconds": round(olap_med, 3), "bare_median_seconds": round(bare_med, 3),
                            "ratio": round(ratio, 2), "target_ratio": TARGET_RATIO, "pass": ratio_ok,
                            "per_call_median_seconds": {k: round(v, 3) for k, v in med.items()},
                            "counts_equal": not problems},
            "problems": problems,
            "total_seconds": round(time.perf_counter() - t_all, 1),
        }
        if args.json is not None:
            merge_json(args.json, "report_10m", results)
        for p in problems:
            print(f"PROBLEM: {p}")
        ok = e2e_ok and ratio_ok and not problems
    finally:
        if args.keep is None:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"kept the dataset in {d}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
