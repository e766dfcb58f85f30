"""The periodic analysis report "一分析三报告" (one analysis, three reports).

For a unit and a month, ``build_report`` computes every figure once (through the DuckDB
layer ``analysis.olap``) into one JSON-able dict; ``render`` turns that dict into the
three addressed versions (police 公安机关, party committee and government 党委政府,
political-legal committee 政法委) as HTML or PDF. The JSON holds every figure the PDF
prints, so a figure can always be traced and checked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.analysis import hotspots as hs
from shiyu.domains.analysis import near_repeat as nr
from shiyu.domains.analysis import warnings as ew
from shiyu.domains.analysis.access import ACTION, resolve_unit
from shiyu.domains.analysis.olap import KINDS, SEGMENT, STREAMS, Olap, Window
from shiyu.domains.geo.models import Grid
from shiyu.domains.items import config as item_config
from shiyu.kit.errors import Invalid
from shiyu.kit.timeutil import utcnow
from shiyu.platform.authz.scope import scope
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit
from shiyu.platform.workflow.calendar import LOCAL_TZ

SCHEMA = "shiyu.report.analysis/1"
#: Units ranked 治安乱点排名: townships 乡镇街道 (level 3) for a city or district, villages
#: 村社区 (level 4) for a township.
RANK_LEVEL = {1: 3, 2: 3, 3: 4}
TOP_CATEGORIES = 10
STREAM_ZH = {"call": "警情", "case": "案情", "opinion": "舆情", "social": "社情"}
STREAM_EN = {"call": "police calls", "case": "cases", "opinion": "citizen requests", "social": "social events"}


def periods(period: str) -> tuple[Window, Window, Window]:
    """The month ``period`` ("YYYY-MM", local time), the month before (环比) and the same
    month a year earlier (同比)."""
    start, end = hs.month_bounds(period)
    prev_start = (start - timedelta(days=1)).replace(day=1)
    ly_start = start.replace(year=start.year - 1)
    ly_end = end.replace(year=end.year - 1)
    return (Window("current", start, end), Window("previous", prev_start, start),
            Window("last_year", ly_start, ly_end))


def _label(w: Window) -> str:
    return w.start.strftime("%Y-%m")


def _change(cur: float, base: float) -> float | None:
    """Relative change (cur - base) / base; None when the base is 0."""
    return (cur - base) / base if base else None


def _row(cur: int, prev: int, ly: int) -> dict[str, Any]:
    return {"current": cur, "previous": prev, "last_year": ly, "mom": _change(cur, prev), "yoy": _change(cur, ly)}


def build_report(session: Session, principal: Any, *, unit_code: str, period: str,
                 snapshot: str | Path | None = None, now: datetime | None = None,
                 permutations: int = 999, seed: int = 12345) -> dict[str, Any]:
    """Every figure of the analysis report for ``unit_code`` and month ``period``.

    ``snapshot`` reads items and calls from a Parquet snapshot directory instead of the
    live database (hot-spot grids, unit names and warnings always come from the database).
    """
    unit = resolve_unit(session, principal, unit_code)
    cur, prev, ly = windows = periods(period)
    now = now or utcnow()
    if cur.start > now:
        raise Invalid("the period has not started yet", code="period_in_future", field="period")
    overdue_at = min(cur.end, now)
    if snapshot is not None:
        snap = Path(snapshot)
        if not snap.is_dir():
            raise Invalid(f"snapshot directory {snap} does not exist", code="snapshot_missing", field="snapshot")
        olap = Olap.from_parquet(snap, principal, root_path=unit.path)
    else:
        olap = Olap.from_database(session, principal, root_path=unit.path, windows=windows, open_at=overdue_at)
    with olap:
        streams = olap.stream_counts(windows)
        kinds = olap.kind_counts(windows)
        cats = olap.category_counts(windows)
        call_names = olap.call_category_names(windows)
        rates = olap.rates(windows)
        level = RANK_LEVEL.get(unit.level)
        children = olap.by_child(windows, len(unit.path) + SEGMENT * (level - unit.level), overdue_at) if level else {}
        daily = olap.daily(cur)
        grid_counts = dict(olap.query("""
            SELECT grid_code, count(*) FROM (
                SELECT grid_code, created_at AS t FROM items UNION ALL SELECT grid_code, occurred_at FROM calls)
            WHERE grid_code IS NOT NULL AND t >= ? AND t < ? GROUP BY ALL""", [cur.start_utc, cur.end_utc]))
        nr_category, nr_points = olap.case_points(cur, seed=seed)
        source = olap.source

    def get(d: dict[Any, int], *key: str) -> int:
        return d.get(key, 0)

    stream_rows = [{"stream": s, **_row(get(streams, "current", s), get(streams, "previous", s),
                                        get(streams, "last_year", s))} for s in STREAMS]
    kind_rows = [{"kind": k, **_row(get(kinds, "current", k), get(kinds, "previous", k),
                                    get(kinds, "last_year", k))} for k in KINDS]
    item_names = {c: cat.name for c, cat in item_config.categories(session).items()}
    category_rows: list[dict[str, Any]] = []
    for stream in ("call", "case", "item"):
        codes = {c for (_w, s, c) in cats if s == stream}
        ranked = sorted(codes, key=lambda c: (-get(cats, "current", stream, c), -get(cats, "previous", stream, c), c))
        for code in ranked[:TOP_CATEGORIES]:
            name = item_names.get(code, code or "-") if stream == "item" else call_names.get((stream, code), code)
            category_rows.append({"stream": stream, "code": code, "name": name,
                                  **_row(get(cats, "current", stream, code), get(cats, "previous", stream, code),
                                         get(cats, "last_year", stream, code))})
    rate_rows: dict[str, Any] = {}
    for name in rates["current"]:
        value, num, den = rates["current"][name]
        rate_rows[name] = {"value": value, "numerator": num, "denominator": den,
                           "previous": rates["previous"][name][0], "last_year": rates["last_year"][name][0]}
    townships = _townships(session, principal, unit, level, children)
    days = []
    d = cur.start.date()
    while d < cur.end.date():
        iso = d.isoformat()
        days.append({"date": iso, **{s: daily.get((iso, s), 0) for s in STREAMS}})
        d += timedelta(days=1)
    hotspots = _hotspots(session, principal, unit, grid_counts, permutations=permutations, seed=seed)
    near = _near_repeat(nr_category, nr_points, call_names, cur, seed=seed)
    warnings = [warning_dict(w) | {"category_name": item_names.get(w.category or "")}
                for w in ew.all_warnings(session, principal, unit_code=unit.code, as_of=overdue_at)]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "unit": {"code": unit.code, "name": unit.name, "level": unit.level},
        "period": {"label": _label(cur), "start": cur.start.isoformat(), "end": cur.end.isoformat(),
                   "previous": {"label": _label(prev), "start": prev.start.isoformat(), "end": prev.end.isoformat()},
                   "last_year": {"label": _label(ly), "start": ly.start.isoformat(), "end": ly.end.isoformat()}},
        "generated_at": now.isoformat(),
        "source": source,
        "streams": stream_rows,
        "kinds": kind_rows,
        "categories": category_rows,
        "rates": rate_rows,
        "townships": townships,
        "daily": days,
        "hotspots": hotspots,
        "near_repeat": near,
        "warnings": warnings,
    }
    report["summary"] = _summary(report)
    return report


def _townships(session: Session, principal: Any, unit: Unit, level: int | None,
               children: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The units ``level`` under ``unit`` the principal may read (all of them, quiet ones
    too), ranked by calls and cases 治安乱点, then by work items and overdue items."""
    if level is None:
        return []
    stmt = select(Unit.path, Unit.code, Unit.name).where(
        Unit.level == level, Unit.kind != "department", Unit.path.startswith(unit.path, autoescape=True))
    rows = session.execute(scope(stmt, principal, ACTION, Unit.path)).all()
    named = {p: (c, n) for p, c, n in rows}
    out = []
    for path in named.keys() | children.keys():
        counts = children.get(path, {})
        code, name = named.get(path, (path.rstrip("/").rsplit("/", 1)[-1], path))
        calls, cases, items = (counts.get(f"{k}:current", 0) for k in ("calls", "cases", "items"))
        calls_p, cases_p, items_p = (counts.get(f"{k}:previous", 0) for k in ("calls", "cases", "items"))
        score = calls + cases
        out.append({"code": code, "name": name, "calls": calls, "cases": cases, "items": items,
                    "calls_previous": calls_p, "cases_previous": cases_p, "items_previous": items_p,
                    "score": score, "mom": _change(score, calls_p + cases_p), "overdue": counts.get("overdue", 0)})
    out.sort(key=lambda r: (-r["score"], -r["items"], -r["overdue"], r["code"]))
    for i, r in enumerate(out, 1):
        r["rank"] = i
    return [{"rank": r.pop("rank"), **r} for r in out]


def _hotspots(session: Session, principal: Any, unit: Unit, counts: dict[str, int], *,
              permutations: int, seed: int) -> dict[str, Any]:
    head = {"method": "getis-ord-gi*", "weights": "queen, binary", "permutations": permutations, "seed": seed,
            "alpha": 0.05, "value": "calls, cases and work items per unified grid"}
    try:
        results = hs.counts_hotspots(session, principal, unit_path=unit.path, counts=counts, action=ACTION,
                                     permutations=permutations, seed=seed)
    except Invalid as exc:
        return {**head, "error": str(exc), "hot": 0, "cold": 0, "features": []}
    names = dict(session.execute(select(Grid.code, Grid.name).where(
        Grid.code.in_([r.id for r in results if r.cls != "none"]))).tuples().all())
    feats = [{"id": r.id, "name": names.get(r.id), "value": r.value, "z": r.z, "p_sim": r.p_sim, "cls": r.cls,
              "island": r.island} for r in results]
    return {**head, "hot": sum(f["cls"] == "hot" for f in feats), "cold": sum(f["cls"] == "cold" for f in feats),
            "features": feats}


def _near_repeat(category: str | None, points: list[tuple[float, float, datetime]],
                 names: dict[tuple[str, str], str], window: Window, *, seed: int) -> dict[str, Any]:
    """The Knox near-repeat table 近重复 of the month's most frequent case category."""
    head: dict[str, Any] = {"method": "knox", "stream": "case", "category": category,
                            "name": names.get(("case", category or ""), category)}
    if category is None:
        return {**head, "error": "no located cases in the period"}
    lon, lat, t = zip(*points, strict=True)
    x, y = nr.to_metres(lon, lat)
    start = window.start_utc
    days = [(ti - start).total_seconds() / 86400 for ti in t]
    try:
        return {**head, **nr.knox(x, y, days, permutations=99, seed=seed).as_dict()}
    except Invalid as exc:
        return {**head, "error": exc.detail}


def warning_dict(w: ew.EarlyWarning) -> dict[str, Any]:
    return {"kind": w.kind, "unit_code": w.unit_code, "unit_name": w.unit_name, "category": w.category,
            "method": w.method, "current": w.current, "expected": w.expected, "threshold": w.threshold,
            "score": w.score, "message_zh": w.message_zh, "message_en": w.message_en}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:+.1f}%"


def _summary(r: dict[str, Any]) -> dict[str, list[str]]:
    """A few sentences 综述 drawn only from figures already in the report."""
    zh: list[str] = []
    en: list[str] = []
    name, label = r["unit"]["name"], r["period"]["label"]
    total = sum(s["current"] for s in r["streams"])
    zh.append(f"{label}，{name}共接报警情、案情及群众诉求、社会事件 {total} 起。")
    en.append(f"In {label}, {name} recorded {total} police calls, cases, citizen requests and social events.")
    for s in r["streams"]:
        zh.append(f"{STREAM_ZH[s['stream']]} {s['current']} 起，环比 {_pct(s['mom'])}，同比 {_pct(s['yoy'])}。")
        en.append(f"{STREAM_EN[s['stream']].capitalize()}: {s['current']} "
                  f"({_pct(s['mom'])} on the previous month, {_pct(s['yoy'])} on a year earlier).")
    rates = r["rates"]
    if rates["closure_rate"]["value"] is not None:
        zh.append(f"工单办结率 {rates['closure_rate']['value'] * 100:.1f}%"
                  + (f"，按期办结率 {rates['on_time_rate']['value'] * 100:.1f}%"
                     if rates["on_time_rate"]["value"] is not None else "") + "。")
        en.append(f"Closure rate {rates['closure_rate']['value'] * 100:.1f}%"
                  + (f", on-time rate {rates['on_time_rate']['value'] * 100:.1f}%"
                     if rates["on_time_rate"]["value"] is not None else "") + ".")
    if r["townships"] and r["townships"][0]["score"]:
        top = r["townships"][0]
        zh.append(f"警情案情最多的是{top['name']}（{top['score']} 起）。")
        en.append(f"Most calls and cases: {top['name']} ({top['score']}).")
    hot = r["hotspots"]
    if not hot.get("error"):
        zh.append(f"热点网格 {hot['hot']} 个，冷点网格 {hot['cold']} 个（Gi*，95% 置信）。")
        en.append(f"{hot['hot']} hot and {hot['cold']} cold grids (Gi*, 95%).")
    zh.append(f"预警 {len(r['warnings'])} 条。")
    en.append(f"{len(r['warnings'])} early warnings.")
    return {"zh": zh, "en": en}


def grid_shapes(session: Session, principal: Any, report: dict[str, Any]) -> dict[str, Any]:
    """Grid polygons for the report's hot-spot map."""
    unit = units.get(session, report["unit"]["code"])
    if unit is None:
        return {}
    return hs.unit_grids(session, principal, unit_path=unit.path, action=ACTION)


def local_month(t: datetime) -> str:
    return t.astimezone(LOCAL_TZ).strftime("%Y-%m")


def to_xlsx(report: dict[str, Any]) -> bytes:
    """The report's tables as an Excel workbook 报表导出, one sheet per table."""
    import io

    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    cols = ("current", "previous", "last_year", "mom", "yoy")
    sheets: list[tuple[str, list[str], list[list[Any]]]] = [
        ("四情", ["stream", *cols], [[r["stream"], *(r[c] for c in cols)] for r in report["streams"]]),
        ("类型", ["kind", *cols], [[r["kind"], *(r[c] for c in cols)] for r in report["kinds"]]),
        ("分类", ["stream", "code", "name", *cols],
         [[r["stream"], r["code"], r["name"], *(r[c] for c in cols)] for r in report["categories"]]),
        ("比率", ["rate", "value", "numerator", "denominator", "previous", "last_year"],
         [[k, v["value"], v["numerator"], v["denominator"], v["previous"], v["last_year"]]
          for k, v in report["rates"].items()]),
        ("乡镇排名", ["rank", "code", "name", "calls", "cases", "items", "score", "mom", "overdue"],
         [[t[k] for k in ("rank", "code", "name", "calls", "cases", "items", "score", "mom", "overdue")]
          for t in report["townships"]]),
        ("每日", ["date", *STREAMS], [[d["date"], *(d[s] for s in STREAMS)] for d in report["daily"]]),
        ("热点", ["grid", "value", "z", "p_sim", "class"],
         [[f["id"], f["value"], f["z"], f["p_sim"], f["cls"]] for f in report["hotspots"].get("features", [])]),
        ("预警", ["kind", "unit_code", "unit_name", "category", "method", "current", "expected", "message"],
         [[w["kind"], w["unit_code"], w["unit_name"], w["category"], w["method"], w["current"], w["expected"],
           w["message_zh"]] for w in report["warnings"]]),
    ]
    for title, head, rows in sheets:
        ws = wb.create_sheet(title)
        ws.append(head)
        for row in rows:
            ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
