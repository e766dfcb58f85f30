"""Charts 图表 of the analysis report, drawn with matplotlib and returned as SVG text.

Every function takes rows of the report dict and a ``labels`` mapping (the renderer's
``LABELS_ZH`` / ``LABELS_EN``) and plots only figures found in those rows. Figures are built
with :class:`matplotlib.figure.Figure` on an Agg canvas, never through ``pyplot``, so nothing
global is touched besides registering the CJK font once (:func:`fonts.use_cjk_in_matplotlib`).
Text is written as outlines (``svg.fonttype = "path"``): the SVGs need no font to show Chinese.

- :func:`streams_bar_svg`: counts per stream 警情/案情/舆情/社情 for the month, the previous
  month 环比 and the same month last year 同比;
- :func:`daily_trend_svg`: daily counts per stream;
- :func:`township_ranking_svg`: townships 乡镇街道 by score (治安乱点 ranking);
- :func:`hotspot_map_svg`: grids filled by their Getis-Ord Gi* class 热点/冷点.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import matplotlib
import shapely
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.path import Path as MplPath
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from .fonts import use_cjk_in_matplotlib

STREAMS = ("call", "case", "opinion", "social")
#: Restrained colours, one per stream, readable in greyscale print.
STREAM_COLORS = {"call": "#1f4e79", "case": "#a23b3b", "opinion": "#4e7d3a", "social": "#c7862c"}
PERIOD_COLORS = ("#1f4e79", "#7f9cb9", "#c9d3de")  # current, previous month, same month last year

#: Fill of a grid by Gi* class and confidence (pseudo p-value ``p_sim``).
HOT_COLORS = {99: "#b2182b", 95: "#ef8a62", 90: "#fddbc7"}
COLD_COLORS = {99: "#2166ac", 95: "#67a9cf", 90: "#d1e5f0"}
NONE_COLOR = "#e6e6e6"
NO_DATA_COLOR = "#ffffff"

_lock = threading.Lock()

WIDTH_IN = 6.5  # fits the A4 text block (about 170 mm)
TEXT_COLOR = "#222222"
GRID_COLOR = "#d9d9d9"

_STYLE = {
    "font.size": 8.5,
    "axes.edgecolor": "#888888",
    "axes.linewidth": 0.6,
    "axes.labelcolor": TEXT_COLOR,
    "axes.titlesize": 9.5,
    "xtick.color": TEXT_COLOR,
    "ytick.color": TEXT_COLOR,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "svg.fonttype": "path",
    "svg.hashsalt": "shiyu-report",
}


def _figure(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.05, metadata={"Date": None})
    return buf.getvalue()


@contextlib.contextmanager
def _styled() -> Iterator[None]:
    """The report style, under a lock: ``rc_context`` swaps process-wide rcParams, and web requests
    render in worker threads."""
    family = use_cjk_in_matplotlib()
    with _lock, matplotlib.rc_context({**_STYLE, "font.family": "sans-serif",
                                       "font.sans-serif": [family, "DejaVu Sans"]}):
        yield


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _tidy(ax: Any, *, grid_axis: str = "y") -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis=grid_axis, color=GRID_COLOR, linewidth=0.5)
    ax.set_axisbelow(True)


def streams_bar_svg(streams: Sequence[Mapping[str, Any]], labels: Mapping[str, Any]) -> str:
    """Grouped bars: each stream's count this month, the previous month and a year earlier.

    ``labels`` needs ``stream`` (stream -> name), ``series_current``, ``series_previous``,
    ``series_last_year`` (legend entries, already naming the months) and ``axis_count``.
    """
    series = (("current", labels["series_current"]), ("previous", labels["series_previous"]),
              ("last_year", labels["series_last_year"]))
    with _styled():
        fig = _figure(2.8)
        ax = fig.add_subplot()
        n = len(streams)
        width = 0.26
        for i, (key, name) in enumerate(series):
            xs = [j + (i - 1) * width for j in range(n)]
            values = [_num(s.get(key)) for s in streams]
            bars = ax.bar(xs, values, width, label=name, color=PERIOD_COLORS[i], edgecolor="none")
            ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:g}" for v in values], padding=1.5,
                         fontsize=7, color=TEXT_COLOR)
        ax.set_xticks(range(n), [labels["stream"].get(s["stream"], s["stream"]) for s in streams])
        ax.set_ylabel(labels["axis_count"])
        ax.margins(y=0.12)
        _tidy(ax)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
        return _svg(fig)


def daily_trend_svg(daily: Sequence[Mapping[str, Any]], labels: Mapping[str, Any],
                    streams: Sequence[str] = STREAMS) -> str:
    """One line per stream over the days of the month (x axis: day of month).

    ``labels`` needs ``stream``, ``axis_count`` and ``axis_day``.
    """
    with _styled():
        fig = _figure(2.6)
        ax = fig.add_subplot()
        days = [str(d.get("date", ""))[8:10].lstrip("0") or str(i + 1) for i, d in enumerate(daily)]
        xs = list(range(len(daily)))
        for stream in streams:
            ys = [_num(d.get(stream)) for d in daily]
            ax.plot(xs, ys, color=STREAM_COLORS.get(stream, "#555555"), linewidth=1.2, marker="o", markersize=2,
                    label=labels["stream"].get(stream, stream))
        step = 1 if len(xs) <= 16 else 2 if len(xs) <= 32 else max(1, len(xs) // 15)
        ax.set_xticks(xs[::step], days[::step])
        ax.set_xlabel(labels["axis_day"])
        ax.set_ylabel(labels["axis_count"])
        ax.set_ylim(bottom=0)
        if xs:
            ax.set_xlim(-0.5, len(xs) - 0.5)
        _tidy(ax)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(streams))
        return _svg(fig)


def township_ranking_svg(townships: Sequence[Mapping[str, Any]], labels: Mapping[str, Any], *,
                         limit: int = 15) -> str:
    """Horizontal bars of the townships' scores, rank 1 at the top, at most ``limit`` rows.

    ``labels`` needs ``axis_score``.
    """
    rows = list(townships)[:limit]
    with _styled():
        fig = _figure(0.6 + 0.24 * max(len(rows), 3))
        ax = fig.add_subplot()
        ys = list(range(len(rows)))
        values = [_num(t.get("score")) for t in rows]
        colors = [HOT_COLORS[99] if i < 3 else "#7f9cb9" for i in ys]
        bars = ax.barh(ys, values, 0.62, color=colors, edgecolor="none")
        ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:g}" for v in values], padding=2, fontsize=7,
                     color=TEXT_COLOR)
        ax.set_yticks(ys, [f"{t.get('rank', i + 1)}. {t.get('name', '')}" for i, t in enumerate(rows)])
        ax.invert_yaxis()
        ax.set_xlabel(labels["axis_score"])
        ax.margins(x=0.1)
        _tidy(ax, grid_axis="x")
        return _svg(fig)


def _confidence(p_sim: Any) -> int:
    p = 1.0 if p_sim is None else float(p_sim)
    return 99 if p <= 0.01 else 95 if p <= 0.05 else 90


def feature_color(feature: Mapping[str, Any]) -> str:
    """Fill colour of one Gi* feature: red shades for hot, blue for cold, grey otherwise."""
    cls = feature.get("cls")
    if cls == "hot":
        return HOT_COLORS[_confidence(feature.get("p_sim"))]
    if cls == "cold":
        return COLD_COLORS[_confidence(feature.get("p_sim"))]
    return NONE_COLOR


def _polygons(geom: BaseGeometry) -> list[Any]:
    if geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _polygons(g)]
    return []


def _path(geom: BaseGeometry, kx: float) -> MplPath | None:
    """A compound path of (multi)polygons with holes, x scaled by ``kx`` (cos latitude)."""
    parts = []
    for poly in _polygons(geom):
        poly = orient(poly, 1.0)  # exterior counter-clockwise, holes clockwise: non-zero fill leaves holes
        for ring in (poly.exterior, *poly.interiors):
            coords = [(x * kx, y) for x, y, *_ in ring.coords]
            if len(coords) >= 4:
                codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(coords) - 2) + [MplPath.CLOSEPOLY]
                parts.append(MplPath(coords, codes))
    return MplPath.make_compound_path(*parts) if parts else None


def _outline(geom: BaseGeometry, kx: float) -> list[list[tuple[float, float]]]:
    lines = []
    boundary = geom.boundary
    for line in getattr(boundary, "geoms", [boundary]):
        if not line.is_empty:
            lines.append([(x * kx, y) for x, y, *_ in line.coords])
    return lines


def hotspot_map_svg(hotspots: Mapping[str, Any], shapes: Mapping[str, BaseGeometry], labels: Mapping[str, Any], *,
                    boundary: BaseGeometry | None = None) -> str | None:
    """The hot-spot map: each grid in ``shapes`` filled by its Gi* class, the unit outline on top.

    ``shapes`` maps grid code -> polygon in lon/lat degrees; x is scaled by cos(latitude) so
    the map keeps its proportions. ``boundary`` defaults to the union of the grids. Grids
    without a result are left white. Returns ``None`` when there is nothing to draw.
    ``labels`` needs ``legend_hot`` / ``legend_cold`` (format strings with ``{level}``),
    ``legend_none``, ``legend_no_data``, ``legend_boundary`` and ``north``.
    """
    geoms = {code: g for code, g in shapes.items() if g is not None and not g.is_empty}
    if not geoms:
        return None
    if boundary is None:
        # Snapped to about 1 cm so that neighbours whose shared edges differ by rounding still merge.
        boundary = shapely.union_all(list(geoms.values()), grid_size=1e-7)
    minx, miny, maxx, maxy = boundary.bounds
    kx = math.cos(math.radians((miny + maxy) / 2))
    by_id = {str(f.get("id")): f for f in hotspots.get("features") or []}

    with _styled():
        width, height = (maxx - minx) * kx, maxy - miny
        aspect = height / width if width > 0 else 1.0
        fig = _figure(min(max(WIDTH_IN * 0.78 * aspect, 2.5), 7.5))
        ax = fig.add_subplot()
        paths, colors, edges = [], [], []
        used: set[str] = set()
        for code, geom in geoms.items():
            path = _path(geom, kx)
            if path is None:
                continue
            feature = by_id.get(str(code))
            color = feature_color(feature) if feature is not None else NO_DATA_COLOR
            paths.append(path)
            colors.append(color)
            edges.append("#9a9a9a" if color == NO_DATA_COLOR else "#ffffff")  # white cells keep a visible edge
            used.add(color)
        ax.add_collection(PathCollection(paths, facecolors=colors, edgecolors=edges, linewidths=0.3))
        for line in _outline(boundary, kx):
            xs, ys = zip(*line, strict=True)
            ax.plot(xs, ys, color="#222222", linewidth=0.9)
        pad = 0.02 * max(width, height)
        ax.set_xlim(minx * kx - pad, maxx * kx + pad)
        ax.set_ylim(miny - pad, maxy + pad)
        ax.set_aspect("equal")
        ax.set_axis_off()

        # North arrow in the bottom right corner, outside the map: "N" 30 pt above the arrow's foot.
        ax.annotate(labels["north"], xy=(1.06, 0.02), xycoords="axes fraction", xytext=(0, 30),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8, annotation_clip=False,
                    arrowprops={"arrowstyle": "<|-", "color": "#222222", "linewidth": 0.9, "shrinkA": 1,
                                "shrinkB": 0})

        handles = []
        for level in (99, 95, 90):
            if level != 90 or HOT_COLORS[90] in used:
                handles.append(Patch(facecolor=HOT_COLORS[level], edgecolor="none",
                                     label=labels["legend_hot"].format(level=level)))
        for level in (99, 95, 90):
            if level != 90 or COLD_COLORS[90] in used:
                handles.append(Patch(facecolor=COLD_COLORS[level], edgecolor="none",
                                     label=labels["legend_cold"].format(level=level)))
        handles.append(Patch(facecolor=NONE_COLOR, edgecolor="none", label=labels["legend_none"]))
        if NO_DATA_COLOR in used:
            handles.append(Patch(facecolor=NO_DATA_COLOR, edgecolor="#9a9a9a", linewidth=0.4,
                                 label=labels["legend_no_data"]))
        handles.append(Line2D([], [], color="#222222", linewidth=0.9, label=labels["legend_boundary"]))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        return _svg(fig)
