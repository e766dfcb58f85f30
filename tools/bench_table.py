"""The short table at the end of ``make bench``: each figure in ``benchmarks/results.json``
with its data size, its baseline and ratio, the machine's cores, its date and its run.

    python tools/bench_table.py [benchmarks/results.json] [--run ID]

With ``--run`` (``make bench`` passes its own run id) a figure that was not written by
that run is marked, and the exit status is 1, so a run that lost a figure is not taken
for a complete one."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _g(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _n(v: Any, fmt: str = ",.1f") -> str:
    return "-" if v is None else format(v, fmt)


def _intake(r: dict[str, Any]) -> list[str]:
    best, sus, acc = r.get("best") or {}, r.get("sustained") or {}, r.get("acceptance") or {}
    raw, empty = _g(r, "baselines", "raw_core_insert") or {}, _g(r, "baselines", "empty_endpoint") or {}
    return [
        f"best {_n(best.get('items_per_second'))} items/s (w{best.get('workers')} c{best.get('concurrency')}, "
        f"p50 {_n(best.get('p50_ms'))} p99 {_n(best.get('p99_ms'))} ms); sustained {_n(sus.get('seconds'), '.0f')} s: "
        f"{_n(sus.get('per_second'))} items/s p99 {_n(sus.get('p99_ms'))} ms, errors {sus.get('errors')}; "
        f"acceptance {'MET' if acc.get('met') else 'NOT MET'}",
        f"raw Core inserts {_n(raw.get('per_second'))} rows/s; /livez {_n(empty.get('requests_per_second'))} req/s",
        f"API/raw {_n(_g(r, 'ratios', 'api_over_raw'), '.3f')}, "
        f"API/empty {_n(_g(r, 'ratios', 'api_over_empty'), '.3f')}",
        f"{_n(_g(r, 'data', 'work_items_at_end'), ',d')} items at end",
    ]


def _locate(r: dict[str, Any]) -> list[str]:
    return [f"{_n(r.get('points'), ',d')} points in {_n(r.get('locate_seconds'), '.3f')} s "
            f"({_n(r.get('points_per_second'), ',.0f')}/s)",
            "geopandas sjoin; vectorised STRtree",
            f"x{_n(r.get('ratio_geopandas_over_ours'))}; x{_n(r.get('ratio_strtree_vectorised_over_ours'))}",
            f"{_n(r.get('grids'), ',d')} grids"]


def _report(r: dict[str, Any]) -> list[str]:
    e, a = r.get("end_to_end") or {}, r.get("aggregation") or {}
    return [f"report median {_n(e.get('median_seconds'), '.2f')} s, worst {_n(e.get('worst_seconds'), '.2f')} s "
            f"(target {_n(e.get('target_seconds'), '.0f')} s)",
            "bare DuckDB aggregation",
            f"x{_n(a.get('ratio'), '.2f')} (limit {_n(a.get('target_ratio'), '.0f')})",
            f"{_n(_g(r, 'data', 'calls'), ',d')} calls"]


def _tick(r: dict[str, Any]) -> list[str]:
    return [f"sla tick {_n(_g(r, 'tick', 'seconds'), '.1f')} s",
            "set-based UPDATE of the overdue items",
            f"x{_n(_g(r, 'ratios', 'tick_over_set_based_overdue_update'))}",
            f"{_n(_g(r, 'data', 'open_items'), ',d')} open items"]


def _import(r: dict[str, Any]) -> list[str]:
    return [f"COPY import {_n(_g(r, 'methods', 'copy', 'first_import', 'seconds'), '.1f')} s",
            f"{r.get('baseline')}",
            f"x{_n(_g(r, 'ratios', 'copy_over_executemany_rows_per_second'))} faster",
            f"{_n(_g(r, 'data', 'file_rows'), ',d')} rows"]


def _pages(r: dict[str, Any]) -> list[str]:
    return [f"worst page p95 {_n(r.get('worst_p95_ms'))} ms ({'PASS' if r.get('pass') else 'FAIL'})",
            "target", f"{_n(r.get('target_ms'), '.0f')} ms", f"{r.get('size')} demo, {_n(r.get('items'), ',d')} items"]


def _forecast(r: dict[str, Any]) -> list[str]:
    demo, wy = _g(r, "demo_city", "mean") or {}, _g(r, "west_yorkshire", "mean") or {}
    return [f"PAI@5% demo {_n(demo.get('forecast_pai@5%'), '.2f')}, "
            f"West Yorkshire {_n(wy.get('forecast_pai@5%'), '.2f')}",
            "naive (last period's counts)",
            f"{_n(demo.get('naive_pai@5%'), '.2f')}; {_n(wy.get('naive_pai@5%'), '.2f')}",
            "held-out months"]


FIGURES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "intake_http": _intake, "locate_points": _locate, "report_10m": _report, "sla_tick": _tick,
    "import_calls": _import, "page_times": _pages, "forecast_pai": _forecast,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", type=Path, default=Path("benchmarks/results.json"))
    ap.add_argument("--run", default=None, help="the run id every figure should carry")
    args = ap.parse_args(argv)
    data = json.loads(args.path.read_text(encoding="utf-8")) if args.path.exists() else {}
    missing = []
    print(f"{'figure':<14} {'cores':>5}  {'date':<20} {'run':<22} result | baseline | ratio | data")
    for key, fn in FIGURES.items():
        r = data.get(key)
        if not isinstance(r, dict):
            print(f"{key:<14} (none)")
            missing.append(key)
            continue
        cores = r.get("cpu_count") or r.get("cores") or "-"
        run = r.get("run") or "-"
        if args.run and run != args.run:
            missing.append(key)
            run += " (OTHER RUN)"
        print(f"{key:<14} {cores!s:>5}  {str(r.get('date', '-'))[:19]:<20} {run:<22} " + " | ".join(fn(r)))
    if args.run:
        print(f"run {args.run}: " + ("every figure written by this run" if not missing
                                    else f"NOT from this run: {', '.join(missing)}"))
    return 1 if args.run and missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
