"""Rendering of the periodic analysis report "一分析三报告" to HTML and PDF.

One report dict (``shiyu.report.analysis/1``, built by ``reports.service``) gives three
documents, one per reader (三报告), with the same figures in a different order of emphasis:

- ``police`` 报公安机关: police calls 警情 and cases 案情 first, then hot spots 热点 and the
  township ranking 治安乱点;
- ``government`` 报党委政府: the assessment first, then social conditions 社情, public opinion
  舆情, handling rates and warnings 预警;
- ``committee`` 报政法委: disputes 矛盾纠纷 and petitions 信访 first, then warnings, ranking and
  hot spots.

Every figure shown comes from the report dict; the renderer only formats (percentages, signs,
dates). Labels live in :data:`LABELS_ZH` / :data:`LABELS_EN` (a print document, not part of the
web UI's message catalogue) and templates hold no Chinese. Charts are SVG (text drawn as
outlines) embedded as ``data:`` URLs. :func:`render_pdf` runs WeasyPrint with the CJK font
subset to the document's characters (see :mod:`shiyu.domains.reports.fonts`).
:func:`render_html_many` / :func:`render_pdf_many` put several audiences into one file (the
figures are drawn once; in the PDF each part is paged from 1).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import jinja2
from markupsafe import Markup
from shapely.geometry.base import BaseGeometry

from shiyu.kit.errors import Invalid
from shiyu.platform.workflow.calendar import LOCAL_TZ

from . import charts
from .fonts import FONT_FAMILY, font_face_css

__all__ = ["AUDIENCES", "LABELS_EN", "LABELS_ZH", "SECTIONS", "render_html", "render_html_many", "render_pdf",
           "render_pdf_many", "section_order"]

AUDIENCES = ("police", "government", "committee")

#: Section order per audience: same figures, different emphasis.
SECTIONS: dict[str, tuple[str, ...]] = {
    "police": ("calls_cases", "hotspots", "townships", "warnings", "overview", "social", "opinion", "rates",
               "summary"),
    "government": ("summary", "overview", "social", "opinion", "rates", "warnings", "calls_cases", "townships",
                   "hotspots"),
    "committee": ("disputes", "warnings", "townships", "hotspots", "summary", "overview", "opinion", "rates",
                  "calls_cases"),
}

STREAMS = ("call", "case", "opinion", "social")
KINDS = ("event", "dispute", "petition", "hotline")
RATES = ("closure_rate", "on_time_rate", "satisfaction", "satisfied_rate", "dispute_resolution_rate",
         "repeat_petition_rate")
CATEGORY_STREAMS = ("call", "case", "item")
HOTSPOT_TABLE_LIMIT = 15
TOWNSHIP_CHART_LIMIT = 15

LABELS_ZH: dict[str, Any] = {
    "lang": "zh-CN",
    "dash": "\u2014",
    "title": "{unit}{period}社会治安形势分析报告",
    "month": "{year}年{month}月",
    "audience": {"police": "报公安机关", "government": "报党委、政府", "committee": "报政法委"},
    "addressee": "报送：{to}",
    "addressee_to": {"police": "公安机关", "government": "党委、政府", "committee": "政法委"},
    "generated": "生成时间：{time}",
    "period_range": "统计周期：{start} 至 {end}",
    "comparison": "对比期：环比 {previous}，同比 {last_year}",
    "source": "数据来源：{source}",
    "sources": {"database": "业务数据库", "parquet": "数据仓库（Parquet 快照）"},
    "numerals": ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二"],
    "number_format": "{n}、",
    "sections": {
        "summary": "综合研判",
        "overview": "总体态势",
        "calls_cases": "警情与案情",
        "social": "社情：事件、矛盾纠纷与信访",
        "disputes": "矛盾纠纷与信访",
        "opinion": "舆情：群众诉求与12345热线",
        "rates": "办理成效",
        "warnings": "风险预警",
        "townships": "乡镇（街道）排名与治安乱点",
        "hotspots": "热点分析",
    },
    "stream": {"call": "警情", "case": "案情", "opinion": "舆情（群众诉求）", "social": "社情（事件、纠纷、信访）"},
    "kind": {"event": "事件", "dispute": "矛盾纠纷", "petition": "信访", "hotline": "12345热线"},
    "rate": {
        "closure_rate": "办结率",
        "on_time_rate": "按期办结率",
        "satisfaction": "满意度评分（1—5分）",
        "satisfied_rate": "满意率",
        "dispute_resolution_rate": "矛盾纠纷化解率",
        "repeat_petition_rate": "重复信访率",
    },
    "categories": {"call": "警情主要类别（前十位）", "case": "案情主要类别（前十位）",
                   "item": "群众诉求与事项主要类别（前十位）"},
    "warning_kind": {"rising": "异常上升", "overdue_cluster": "超期积压"},
    "col": {
        "item": "项目", "category": "类别", "mom": "环比", "yoy": "同比", "rank": "排名", "no": "序号",
        "township": "乡镇（街道）", "calls": "警情", "cases": "案情", "items": "事项", "score": "综合得分",
        "overdue": "超期事项", "rate": "指标", "value": "本期", "fraction": "分子/分母",
        "previous": "上期", "last_year": "去年同期", "kind": "类型", "area": "地区", "message": "说明",
        "grid": "网格编码", "cls": "类别", "count": "数值", "z": "z 得分", "p": "伪 p 值",
    },
    "cls": {"hot": "热点", "cold": "冷点", "none": "不显著"},
    "empty": "本期无相关数据。",
    "no_summary": "本期无综述。",
    "no_warnings": "本期未触发预警。",
    "hot_method": "采用 {method} 局部空间统计（{weights} 空间权重，{permutations} 次条件置换检验，随机种子 {seed}）。",
    "hot_alpha": "显著性水平 {alpha}。",
    "hot_counts": "共识别热点网格 {hot} 个、冷点网格 {cold} 个。",
    "hot_error": "本期未能进行热点分析：{error}",
    "hot_no_shapes": "未提供网格边界数据，本报告略去热点分布图。",
    "hot_table": "显著热点、冷点网格",
    "nr_title": "近重复模式（Knox 检验）",
    "nr_text": "以本期{name}（{n} 起，有坐标）为例，按距离与间隔天数统计案件对，与 {permutations} 次随机置换时间后的"
               "期望对比。表中为 Knox 比值（观测/期望）及 p 值；比值大于 1 且 p ≤ 0.05 的格表示近重复显著。",
    "nr_error": "本期未能进行近重复分析：{error}",
    "nr_space": "距离（米）",
    "nr_time": "间隔（天）",
    "fig_streams": "各类数据本月与上月、去年同期对比",
    "fig_daily": "各类数据逐日走势",
    "fig_townships": "乡镇（街道）综合得分排名",
    "fig_map": "网格热点分布（Getis-Ord Gi*）",
    # Chart labels
    "series_current": "{label}",
    "series_previous": "{label}（上月）",
    "series_last_year": "{label}（去年同期）",
    "axis_count": "数量（起）",
    "axis_day": "日期（日）",
    "axis_score": "综合得分",
    "legend_hot": "热点（置信度 {level}%）",
    "legend_cold": "冷点（置信度 {level}%）",
    "legend_none": "不显著",
    "legend_no_data": "无分析结果",
    "legend_boundary": "辖区边界",
    "north": "北",
}

LABELS_EN: dict[str, Any] = {
    "lang": "en",
    "dash": "\u2014",
    "title": "Social Order and Safety Analysis: {unit}, {period}",
    "month": "{month_name} {year}",
    "month_names": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                    "October", "November", "December"],
    "audience": {"police": "For the public security organs", "government": "For the Party committee and government",
                 "committee": "For the political-legal committee"},
    "addressee": "To: {to}",
    "addressee_to": {"police": "public security organs", "government": "Party committee and government",
                     "committee": "political-legal committee"},
    "generated": "Generated: {time}",
    "period_range": "Period: {start} to {end}",
    "comparison": "Compared with: {previous} (month on month), {last_year} (year on year)",
    "source": "Source: {source}",
    "sources": {"database": "operational database", "parquet": "data warehouse (Parquet snapshot)"},
    "numerals": [],
    "number_format": "{n}. ",
    "sections": {
        "summary": "Assessment",
        "overview": "Overall figures",
        "calls_cases": "Police calls and cases",
        "social": "Social conditions: events, disputes and petitions",
        "disputes": "Disputes and petitions",
        "opinion": "Public opinion: citizen requests and the 12345 hotline",
        "rates": "Handling performance",
        "warnings": "Early warnings",
        "townships": "Township ranking and trouble spots",
        "hotspots": "Hot-spot analysis",
    },
    "stream": {"call": "Police calls", "case": "Cases", "opinion": "Public opinion (requests)",
               "social": "Social conditions (events, disputes, petitions)"},
    "kind": {"event": "Events", "dispute": "Disputes", "petition": "Petitions", "hotline": "12345 hotline"},
    "rate": {
        "closure_rate": "Closure rate",
        "on_time_rate": "On-time closure rate",
        "satisfaction": "Satisfaction (mean rating 1-5)",
        "satisfied_rate": "Satisfied rate",
        "dispute_resolution_rate": "Dispute resolution rate",
        "repeat_petition_rate": "Repeat petition rate",
    },
    "categories": {"call": "Main call categories (top 10)", "case": "Main case categories (top 10)",
                   "item": "Main request and item categories (top 10)"},
    "warning_kind": {"rising": "Sudden rise", "overdue_cluster": "Overdue cluster"},
    "col": {
        "item": "Item", "category": "Category", "mom": "MoM", "yoy": "YoY", "rank": "Rank", "no": "No.",
        "township": "Township", "calls": "Calls", "cases": "Cases", "items": "Items", "score": "Score",
        "overdue": "Overdue", "rate": "Indicator", "value": "This period", "fraction": "Num./denom.",
        "previous": "Previous", "last_year": "Last year", "kind": "Type", "area": "Area", "message": "Details",
        "grid": "Grid code", "cls": "Class", "count": "Value", "z": "z-score", "p": "Pseudo p",
    },
    "cls": {"hot": "Hot spot", "cold": "Cold spot", "none": "Not significant"},
    "empty": "No data for this period.",
    "no_summary": "No assessment for this period.",
    "no_warnings": "No warnings were raised in this period.",
    "hot_method": "Local statistic {method} ({weights} spatial weights, {permutations} conditional permutations, "
                  "seed {seed}).",
    "hot_alpha": "Significance level {alpha}.",
    "hot_counts": "{hot} hot-spot grids and {cold} cold-spot grids were found.",
    "hot_error": "The hot-spot analysis could not run for this period: {error}",
    "hot_no_shapes": "No grid boundaries were provided, so the hot-spot map is omitted.",
    "hot_table": "Significant hot and cold grids",
    "nr_title": "Near repeats (Knox test)",
    "nr_text": "Pairs of {name} cases this month ({n} with coordinates) by distance and days apart, against "
               "the mean of {permutations} random permutations of their times. Each cell shows the Knox ratio "
               "(observed / expected) and its p-value; a ratio above 1 with p ≤ 0.05 is a significant near repeat.",
    "nr_error": "The near-repeat test could not run for this period: {error}",
    "nr_space": "Distance (m)",
    "nr_time": "Days apart",
    "fig_streams": "This month against the previous month and a year earlier",
    "fig_daily": "Daily counts",
    "fig_townships": "Townships by score",
    "fig_map": "Grid hot spots (Getis-Ord Gi*)",
    "series_current": "{label}",
    "series_previous": "{label} (previous month)",
    "series_last_year": "{label} (a year earlier)",
    "axis_count": "Count",
    "axis_day": "Day of month",
    "axis_score": "Score",
    "legend_hot": "Hot spot ({level}% confidence)",
    "legend_cold": "Cold spot ({level}% confidence)",
    "legend_none": "Not significant",
    "legend_no_data": "No result",
    "legend_boundary": "Boundary",
    "north": "N",
}

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("shiyu.domains.reports", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


# ---------------------------------------------------------------------------------------------
# Formatting (the only arithmetic the renderer does)

def _missing(v: Any) -> bool:
    return v is None or isinstance(v, jinja2.Undefined)


def fmt_count(v: Any) -> str:
    """A count or value: ``—`` for null, integers without a decimal point."""
    if _missing(v):
        return "\u2014"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def fmt_change(v: Any) -> str:
    """A relative change (fraction) as a signed percentage: ``+20.0%``, ``\u22125.0%``, ``—`` for null."""
    if _missing(v):
        return "\u2014"
    pct = round(float(v) * 100, 1)
    if pct == 0:
        return "0.0%"
    sign = "+" if pct > 0 else "\u2212"
    return f"{sign}{abs(pct):.1f}%"


def fmt_rate(v: Any, key: str = "") -> str:
    """A rate: a fraction as a percentage, the satisfaction score (mean rating 1..5) as ``4.30``."""
    if _missing(v):
        return "\u2014"
    if key == "satisfaction":
        return f"{float(v):.2f}"
    return f"{float(v) * 100:.1f}%"


def fmt_fixed(v: Any, digits: int = 2) -> str:
    if _missing(v):
        return "\u2014"
    return f"{float(v):.{digits}f}".replace("-", "\u2212")


def fmt_fraction(rate: Mapping[str, Any]) -> str:
    num, den = rate.get("numerator"), rate.get("denominator")
    if num is None and den is None:
        return "\u2014"
    if num is None:
        return f"n = {fmt_count(den)}"
    return f"{fmt_count(num)}/{fmt_count(den)}"


_env.filters.update(count=fmt_count, change=fmt_change, rate=fmt_rate, fixed=fmt_fixed, fraction=fmt_fraction)


def _labels(locale: str) -> dict[str, Any]:
    lang = locale.replace("-", "_").split("_")[0].lower()
    if lang == "zh":
        return LABELS_ZH
    if lang == "en":
        return LABELS_EN
    raise Invalid(f"unsupported locale {locale!r}", field="locale", params={"locale": locale})


def _month(label: Any, labels: Mapping[str, Any]) -> str:
    m = _MONTH.match(str(label or ""))
    if not m:
        return str(label or "")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        return str(label)
    names = labels.get("month_names") or []
    return labels["month"].format(year=year, month=month, month_name=names[month - 1] if names else month)


def _parse(ts: Any) -> datetime | None:
    if not ts:
        return None
    try:
        t = datetime.fromisoformat(str(ts))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=LOCAL_TZ)


def _local_date(ts: Any, *, end: bool = False) -> str:
    t = _parse(ts)
    if t is None:
        return str(ts or "\u2014")
    t = t.astimezone(LOCAL_TZ)
    if end:  # the period end is exclusive: show the last day inside it
        t -= timedelta(microseconds=1)
    return t.date().isoformat()


def _local_time(ts: Any) -> str:
    t = _parse(ts)
    return str(ts or "\u2014") if t is None else t.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def section_order(audience: str) -> tuple[str, ...]:
    """The section keys of one audience's report, in order."""
    try:
        return SECTIONS[audience]
    except KeyError:
        raise Invalid(f"unknown audience {audience!r}", field="audience",
                      params={"audience": audience, "allowed": list(AUDIENCES)}) from None


def _number(i: int, labels: Mapping[str, Any]) -> str:
    numerals = labels["numerals"]
    n = numerals[i] if i < len(numerals) else str(i + 1)
    return labels["number_format"].format(n=n)


def _data_url(svg: str | None) -> str | None:
    if not svg:
        return None
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _near_repeat(nr: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Knox table as text cells (``None`` when the report has no near-repeat section)."""
    if not nr:
        return None
    if nr.get("error") or not nr.get("observed"):
        return {"error": labels["nr_error"].format(error=nr.get("error") or "\u2014")}
    sb, tb = nr["space_bands_m"], nr["time_bands_days"]
    s_labels = [f"{int(lo)}\u2013{int(hi)}" for lo, hi in zip([0, *sb[:-1]], sb, strict=True)]
    t_labels = [f"{int(lo)}\u2013{int(hi) - 1}" for lo, hi in zip([0, *tb[:-1]], tb, strict=True)]
    rows = []
    for i, label in enumerate(s_labels):
        cells = []
        for j in range(len(tb)):
            ratio, p = nr["ratio"][i][j], nr["p_value"][i][j]
            text = "\u2014" if ratio is None else f"{ratio:.2f} ({p:.2f})"
            cells.append({"text": text, "sig": ratio is not None and ratio > 1 and p is not None and p <= 0.05})
        rows.append({"label": label, "cells": cells})
    return {"text": labels["nr_text"].format(name=nr.get("name") or nr.get("category") or "", n=nr.get("n"),
                                             permutations=nr.get("permutations")),
            "time_labels": t_labels, "rows": rows}


def _hotspot_rows(features: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def z(f: Mapping[str, Any]) -> float:
        return float(f.get("z") or 0.0)

    hot = sorted((f for f in features if f.get("cls") == "hot"), key=z, reverse=True)
    cold = sorted((f for f in features if f.get("cls") == "cold"), key=z)
    return (hot + cold)[:HOTSPOT_TABLE_LIMIT]


def _hotspot_text(hs: Mapping[str, Any], labels: Mapping[str, Any]) -> list[str]:
    method = hs.get("method")
    method = "Getis-Ord Gi*" if method in (None, "getis-ord-gi*") else str(method)
    text = [labels["hot_method"].format(method=method, weights=hs.get("weights", "\u2014"),
                                        permutations=fmt_count(hs.get("permutations")),
                                        seed=fmt_count(hs.get("seed")))]
    if hs.get("alpha") is not None:
        text.append(labels["hot_alpha"].format(alpha=f"{float(hs['alpha']):g}"))
    text.append(labels["hot_counts"].format(hot=fmt_count(hs.get("hot")), cold=fmt_count(hs.get("cold"))))
    return text


def _boundary(report: Mapping[str, Any], shapes: Mapping[str, BaseGeometry]) -> BaseGeometry | None:
    """The unit's own polygon when ``shapes`` carries the unit code (else the map outlines the grids' union)."""
    geom = shapes.get(str(report.get("unit", {}).get("code", "")))
    return geom if geom is not None and not geom.is_empty else None


def _months(report: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, str]:
    period = report.get("period") or {}
    return {"current": _month(period.get("label"), labels),
            "previous": _month((period.get("previous") or {}).get("label"), labels),
            "last_year": _month((period.get("last_year") or {}).get("label"), labels)}


def _stream_rows(report: Mapping[str, Any], labels: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{**s, "label": labels["stream"].get(s.get("stream"), s.get("stream"))}
            for s in report.get("streams") or []]


def _charts(report: Mapping[str, Any], shapes: Mapping[str, BaseGeometry] | None,
            labels: Mapping[str, Any]) -> dict[str, str | None]:
    """The four figures as ``data:`` URLs (``None`` when there is nothing to draw); the same for every audience."""
    months = _months(report, labels)
    chart_labels = {
        **labels,
        "series_current": labels["series_current"].format(label=months["current"]),
        "series_previous": labels["series_previous"].format(label=months["previous"]),
        "series_last_year": labels["series_last_year"].format(label=months["last_year"]),
    }
    streams = _stream_rows(report, labels)
    townships = report.get("townships") or []
    daily = report.get("daily") or []
    hs = report.get("hotspots") or {}
    hotspot_map = None
    if not hs.get("error") and shapes:
        boundary = _boundary(report, shapes)
        unit_code = str((report.get("unit") or {}).get("code"))
        grids = {k: g for k, g in shapes.items() if k != unit_code} if boundary is not None else shapes
        hotspot_map = charts.hotspot_map_svg(hs, grids, chart_labels, boundary=boundary)
    return {
        "streams": _data_url(charts.streams_bar_svg(streams, chart_labels)) if streams else None,
        "daily": _data_url(charts.daily_trend_svg(daily, chart_labels)) if daily else None,
        "townships": _data_url(charts.township_ranking_svg(townships, chart_labels, limit=TOWNSHIP_CHART_LIMIT))
        if townships else None,
        "map": _data_url(hotspot_map),
    }


def _part(report: Mapping[str, Any], audience: str, labels: Mapping[str, Any],
          figures: Mapping[str, str | None]) -> dict[str, Any]:
    """Everything one audience's report shows, already picked and labelled."""
    order = section_order(audience)
    zh = labels["lang"] == "zh-CN"
    unit = report.get("unit") or {}
    period = report.get("period") or {}
    months = _months(report, labels)

    streams = _stream_rows(report, labels)
    stream_by = {s["stream"]: s for s in streams}
    kind_by = {k.get("kind"): {**k, "label": labels["kind"].get(k.get("kind"), k.get("kind"))}
               for k in report.get("kinds") or []}
    rates_in = report.get("rates") or {}
    rates = [{**rates_in[key], "key": key, "label": labels["rate"][key]} for key in RATES if rates_in.get(key)]
    rate_by = {r["key"]: r for r in rates}
    categories = {s: [c for c in report.get("categories") or [] if c.get("stream") == s] for s in CATEGORY_STREAMS}

    def pick(by: Mapping[str, Any], keys: Sequence[str]) -> list[Any]:
        return [by[k] for k in keys if k in by]

    hs = report.get("hotspots") or {}
    hs_error = hs.get("error")
    warnings = [{**w, "kind_label": labels["warning_kind"].get(w.get("kind"), w.get("kind")),
                 "message": w.get("message_zh" if zh else "message_en") or ""}
                for w in report.get("warnings") or []]

    return {
        "audience": audience,
        "title": labels["title"].format(unit=unit.get("name", ""), period=months["current"]),
        "audience_heading": labels["audience"][audience],
        "addressee": labels["addressee"].format(to=labels["addressee_to"][audience]),
        "generated": labels["generated"].format(time=_local_time(report.get("generated_at"))),
        "period_range": labels["period_range"].format(start=_local_date(period.get("start")),
                                                      end=_local_date(period.get("end"), end=True)),
        "comparison": labels["comparison"].format(previous=months["previous"], last_year=months["last_year"]),
        "source": labels["source"].format(source=labels["sources"].get(report.get("source"), report.get("source"))),
        "months": months,
        "sections": [{"key": key, "number": _number(i, labels), "title": labels["sections"][key]}
                     for i, key in enumerate(order)],
        "summary": (report.get("summary") or {}).get("zh" if zh else "en") or [],
        "streams": streams,
        "calls_cases_rows": pick(stream_by, ("call", "case")),
        "social_rows": pick(stream_by, ("social",)) + pick(kind_by, ("event", "dispute", "petition")),
        "dispute_rows": pick(kind_by, ("dispute", "petition", "event")),
        "dispute_rates": pick(rate_by, ("dispute_resolution_rate", "repeat_petition_rate")),
        "opinion_rows": pick(stream_by, ("opinion",)) + pick(kind_by, ("hotline",)),
        "categories": categories,
        "rates": rates,
        "townships": report.get("townships") or [],
        "warnings": warnings,
        "hotspot_error": labels["hot_error"].format(error=hs_error) if hs_error else None,
        "hotspot_text": [] if hs_error else _hotspot_text(hs, labels),
        "hotspot_rows": [] if hs_error else _hotspot_rows(hs.get("features") or []),
        "near_repeat": _near_repeat(report.get("near_repeat") or {}, labels),
        "charts": figures,
    }


def _check(report: Mapping[str, Any], audiences: Sequence[str]) -> None:
    if isinstance(audiences, str) or not audiences:
        raise Invalid("no audience", field="audience", params={"allowed": list(AUDIENCES)})
    for audience in audiences:
        section_order(audience)
    if not isinstance(report, Mapping) or "unit" not in report or "period" not in report:
        raise Invalid("not an analysis report", field="report")


def _parts(report: Mapping[str, Any], audiences: Sequence[str], shapes: Mapping[str, BaseGeometry] | None,
           locale: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    _check(report, audiences)
    labels = _labels(locale)
    figures = _charts(report, shapes, labels)
    return labels, [_part(report, a, labels, figures) for a in audiences]


def _document(labels: Mapping[str, Any], parts: Sequence[Mapping[str, Any]], font_css: str) -> str:
    # The title names the unit and the month, so it is the same in every part.
    return _env.get_template("reports/analysis.html").render(
        L=labels, parts=parts, title=parts[0]["title"], font_css=Markup(font_css), font_family=FONT_FAMILY)


def render_html(report: dict, *, audience: str, shapes: Mapping[str, BaseGeometry] | None = None,
                locale: str = "zh_CN") -> str:
    """The report as a standalone HTML document for one ``audience`` (one of :data:`AUDIENCES`).

    ``shapes`` maps grid code -> polygon (lon/lat) for the hot-spot map; without it the map is
    replaced by a sentence. ``locale`` is ``zh_CN`` (default) or ``en``. The CJK font is embedded,
    subset to the characters used.
    """
    return render_html_many(report, audiences=(audience,), shapes=shapes, locale=locale)


def render_html_many(report: dict, *, audiences: Sequence[str] = AUDIENCES,
                     shapes: Mapping[str, BaseGeometry] | None = None, locale: str = "zh_CN") -> str:
    """One HTML document holding the report for each of ``audiences``, each part on new pages in print."""
    labels, parts = _parts(report, audiences, shapes, locale)
    # Self-contained: the font is embedded, cut down to the characters used, so the file reads
    # the same anywhere and names no path on this server.
    return _document(labels, parts, font_face_css(_document(labels, parts, "")))


def render_pdf(report: dict, *, audience: str, shapes: Mapping[str, BaseGeometry] | None = None,
               locale: str = "zh_CN") -> bytes:
    """The report as an A4 PDF (WeasyPrint) with the CJK font embedded (subset to the text used)."""
    return render_pdf_many(report, audiences=(audience,), shapes=shapes, locale=locale)


def render_pdf_many(report: dict, *, audiences: Sequence[str] = AUDIENCES,
                    shapes: Mapping[str, BaseGeometry] | None = None, locale: str = "zh_CN",
                    on_part: Callable[[], None] | None = None) -> bytes:
    """One PDF with the report for each of ``audiences`` in turn, each part paged from 1.

    The figures are drawn once and shared by the parts. ``on_part`` is called after each part
    is laid out (progress reporting).
    """
    from weasyprint import HTML
    from weasyprint.text.fonts import FontConfiguration

    labels, parts = _parts(report, audiences, shapes, locale)
    # First pass: the characters the documents use, so the embedded font holds only those.
    text = "".join(_document(labels, [part], "") for part in parts)
    font_css = font_face_css(text)
    font_config = FontConfiguration()
    documents = []
    for part in parts:
        html = HTML(string=_document(labels, [part], font_css), base_url=None)
        documents.append(html.render(font_config=font_config))
        if on_part is not None:
            on_part()
    pages = [page for document in documents for page in document.pages]
    # The font is already cut down to the documents' characters: embed it as it is (WeasyPrint's own
    # subsetting would cost another half second for nothing).
    return documents[0].copy(pages).write_pdf(full_fonts=True)
