"""Short-term hot-spot forecast 短期热点预测 and its evaluation 预测评估.

Forecasts next period's counts per cell 网格单元 from the points of past periods 历史时段 and
scores them with the Predictive Accuracy Index (PAI 预测准确指数) and the Prediction Efficiency
Index (PEI 预测效率指数), the usual measures of crime and incident hot-spot maps.

* Cells 单元: a regular raster 规则栅格 (``CellGrid``) over projected coordinates in metres, or
  arbitrary cells (unified grids 全科网格, communities ...) given as a cell index per event
  (``counts_from_index``) with their own areas; ``pai`` and ``pei`` only need scores, actual
  counts and areas per cell.
* Forecasts 预测: ``ew_kde_forecast``, an exponentially weighted kernel density estimate
  指数加权核密度估计 (Gaussian kernel, a period of age ``a`` weighs ``decay ** a``; on the raster
  a separable Gaussian blur 可分离高斯模糊 of the weighted counts), ``ew_kde_at`` (the same
  estimate evaluated at arbitrary points, e.g. cell centroids), and ``naive_forecast`` (the
  baseline 基线: last period's counts 上期计数).
* ``choose_params`` picks ``(decay, bandwidth)`` by PAI on the last history period, forecasting
  it from the periods before it, so the held-out period 留出时段 is never looked at.

Pure functions over numpy arrays; no database, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CellGrid",
    "choose_params",
    "counts_from_index",
    "ew_kde_at",
    "ew_kde_forecast",
    "flag_cells",
    "naive_forecast",
    "pai",
    "pei",
    "period_weights",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Kernel truncated at this many standard deviations 截断半径.
TRUNCATE = 4.0


@dataclass(frozen=True)
class CellGrid:
    """A regular raster 规则栅格 of square cells over ``bounds`` (metres, projected).

    Cell ids are row-major: ``id = row * nx + col``, row 0 at ``ymin``, col 0 at ``xmin``. The
    raster covers the bounds completely (the last row/column may reach past ``xmax``/``ymax``).
    """

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    cell: float

    def __post_init__(self) -> None:
        if not self.cell > 0:
            raise ValueError("cell size must be positive")
        if not (self.xmax > self.xmin and self.ymax > self.ymin):
            raise ValueError("empty bounds")

    @classmethod
    def around(cls, points: FloatArray, cell: float, margin: float = 0.0) -> CellGrid:
        """The raster over the bounding box of ``points`` (n x 2), grown by ``margin`` metres."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        lo, hi = pts.min(axis=0) - margin, pts.max(axis=0) + margin
        hi = np.maximum(hi, lo + cell)
        return cls(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), float(cell))

    @property
    def nx(self) -> int:
        """Columns 列数."""
        return max(1, math.ceil((self.xmax - self.xmin) / self.cell - 1e-9))

    @property
    def ny(self) -> int:
        """Rows 行数."""
        return max(1, math.ceil((self.ymax - self.ymin) / self.cell - 1e-9))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.ny, self.nx

    @property
    def size(self) -> int:
        """Number of cells 单元数."""
        return self.nx * self.ny

    @property
    def areas(self) -> FloatArray:
        """Area per cell 单元面积 (square metres), all equal."""
        return np.full(self.size, self.cell * self.cell)

    def centres(self) -> FloatArray:
        """Cell centres 单元中心 (size x 2), in id order."""
        xs = self.xmin + (np.arange(self.nx) + 0.5) * self.cell
        ys = self.ymin + (np.arange(self.ny) + 0.5) * self.cell
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])

    def index(self, points: FloatArray) -> IntArray:
        """Cell id per point (n x 2); -1 for points outside the raster 栅格外."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        col = np.floor((pts[:, 0] - self.xmin) / self.cell)
        row = np.floor((pts[:, 1] - self.ymin) / self.cell)
        ok = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny) & np.isfinite(col) & np.isfinite(row)
        out = np.full(len(pts), -1, dtype=np.int64)
        out[ok] = row[ok].astype(np.int64) * self.nx + col[ok].astype(np.int64)
        return out

    def counts(self, points: FloatArray) -> FloatArray:
        """Points per cell 单元计数 (points outside the raster are dropped)."""
        return counts_from_index(self.index(points), self.size)


def counts_from_index(index: npt.ArrayLike, n_cells: int) -> FloatArray:
    """Events per cell from a cell index per event 事件所在单元 (negative ids are ignored)."""
    idx = np.asarray(index, dtype=np.int64).ravel()
    idx = idx[(idx >= 0) & (idx < n_cells)]
    return np.bincount(idx, minlength=n_cells).astype(np.float64)


def period_weights(n_periods: int, decay: float) -> FloatArray:
    """Weight per period 时段权重, oldest first: ``decay ** age`` with age 0 for the last."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError("decay must lie in [0, 1]")
    ages = np.arange(n_periods - 1, -1, -1, dtype=np.float64)
    return np.power(decay, ages)  # 0 ** 0 == 1: decay 0 keeps the last period only


def _kernel_1d(sigma_cells: float) -> FloatArray:
    """Cell-integrated Gaussian 离散高斯核 (sums to 1); ``[1]`` for a zero bandwidth."""
    if sigma_cells <= 0:
        return np.ones(1)
    half = max(1, math.ceil(TRUNCATE * sigma_cells))
    edges = (np.arange(-half, half + 2) - 0.5) / (sigma_cells * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.array([math.erf(e) for e in edges]))
    k = np.diff(cdf)
    return k / k.sum()


def _blur(raster: FloatArray, kernel: FloatArray) -> FloatArray:
    """Separable convolution 可分离卷积 with zero padding (mass past the edges is lost)."""
    if len(kernel) == 1:
        return raster * kernel[0]
    h = len(kernel) // 2
    ny, nx = raster.shape
    pad = np.pad(raster, ((0, 0), (h, h)))
    tmp = np.zeros_like(raster)
    for j, w in enumerate(kernel):
        tmp += w * pad[:, j:j + nx]
    pad = np.pad(tmp, ((h, h), (0, 0)))
    out = np.zeros_like(raster)
    for j, w in enumerate(kernel):
        out += w * pad[j:j + ny, :]
    return out


def ew_kde_forecast(history: Sequence[FloatArray], cells: CellGrid, *, decay: float = 0.5,
                    bandwidth: float) -> FloatArray:
    """Exponentially weighted kernel density estimate 指数加权核密度 per cell of ``cells``.

    ``history`` holds the (x, y) points of each period, oldest first; a point of age ``a``
    (0 for the last period) weighs ``decay ** a``. The weighted counts are blurred with a
    Gaussian kernel of standard deviation ``bandwidth`` metres (cell-integrated, truncated at
    ``TRUNCATE`` sigma), so the result is an expected weighted count per cell: non-negative,
    summing to the weighted total less the mass blurred past the raster's edges.
    """
    if bandwidth < 0:
        raise ValueError("bandwidth must be non-negative")
    w = period_weights(len(history), decay)
    raster = np.zeros(cells.size)
    for wi, pts in zip(w, history, strict=True):
        if wi > 0 and len(pts):
            raster += wi * cells.counts(pts)
    out = _blur(raster.reshape(cells.shape), _kernel_1d(bandwidth / cells.cell)).ravel()
    return np.maximum(out, 0.0)


def ew_kde_at(history: Sequence[FloatArray], targets: FloatArray, *, decay: float = 0.5, bandwidth: float,
              chunk: int = 2_000_000) -> FloatArray:
    """The same estimate evaluated at arbitrary points 任意点 (e.g. centroids of irregular cells).

    Returns the weighted Gaussian density (per square metre) at each target; multiply by a
    cell's area for an expected count. Direct summation, chunked to ``chunk`` pairs at a time.
    """
    if not bandwidth > 0:
        raise ValueError("bandwidth must be positive")
    tg = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    w = period_weights(len(history), decay)
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in history]
    src = np.concatenate([p for p in pts] or [np.empty((0, 2))])
    wts = np.concatenate([np.full(len(p), wi) for p, wi in zip(pts, w, strict=True)] or [np.empty(0)])
    keep = wts > 0
    src, wts = src[keep], wts[keep]
    out = np.zeros(len(tg))
    if not len(src):
        return out
    step = max(1, chunk // len(src))
    norm = 1.0 / (2.0 * math.pi * bandwidth * bandwidth)
    for a in range(0, len(tg), step):
        t = tg[a:a + step]
        d2 = ((t[:, None, :] - src[None, :, :]) ** 2).sum(axis=2)
        out[a:a + step] = norm * (np.exp(-d2 / (2.0 * bandwidth * bandwidth)) @ wts)
    return out


def naive_forecast(last_period_points: FloatArray, cells: CellGrid) -> FloatArray:
    """Naive baseline 朴素基线: last period's counts per cell."""
    return cells.counts(last_period_points)


def flag_cells(scores: npt.ArrayLike, cell_areas: npt.ArrayLike, coverage: float) -> IntArray:
    """Ids of the cells flagged 标记 at ``coverage`` (share of total area, 0-1].

    Cells are taken by score, highest first (ties: lower id first 平局按编号), until their area
    reaches ``coverage`` of the total; the cell that crosses the threshold is included.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    a = np.asarray(cell_areas, dtype=np.float64).ravel()
    if s.shape != a.shape:
        raise ValueError("scores and cell_areas differ in length")
    if not 0.0 < coverage <= 1.0:
        raise ValueError("coverage must lie in (0, 1]")
    order = np.lexsort((np.arange(len(s)), -s))
    cum = np.cumsum(a[order])
    k = int(np.searchsorted(cum, coverage * cum[-1] * (1.0 - 1e-12), side="left")) + 1
    return order[:min(k, len(s))]


def pai(scores: npt.ArrayLike, actual_counts: npt.ArrayLike, cell_areas: npt.ArrayLike, coverage: float) -> float:
    """Predictive Accuracy Index 预测准确指数: (hits / N) / (flagged area / total area).

    ``hits`` are the actual events in the cells flagged by ``scores`` (see ``flag_cells``), N all
    actual events. NaN when there are no events.
    """
    y = np.asarray(actual_counts, dtype=np.float64).ravel()
    a = np.asarray(cell_areas, dtype=np.float64).ravel()
    n = y.sum()
    if n <= 0:
        return float("nan")
    f = flag_cells(scores, a, coverage)
    return float((y[f].sum() / n) / (a[f].sum() / a.sum()))


def pei(scores: npt.ArrayLike, actual_counts: npt.ArrayLike, cell_areas: npt.ArrayLike, coverage: float) -> float:
    """Prediction Efficiency Index 预测效率指数: hits / the most hits possible in the same area.

    The best possible flagging takes the cells by actual counts (same coverage rule and
    tie-break), so PEI lies in [0, 1] for equal cell areas and is 1 when ``scores`` rank
    the cells as the actual counts do. NaN when there are no events.
    """
    y = np.asarray(actual_counts, dtype=np.float64).ravel()
    a = np.asarray(cell_areas, dtype=np.float64).ravel()
    best = y[flag_cells(y, a, coverage)].sum()
    if best <= 0:
        return float("nan")
    return float(y[flag_cells(scores, a, coverage)].sum() / best)


def choose_params(history: Sequence[FloatArray], cells: CellGrid, candidates: Iterable[tuple[float, float]],
                  *, coverage: float = 0.05, mask: npt.ArrayLike | None = None) -> tuple[float, float]:
    """``(decay, bandwidth)`` with the best PAI 参数选择 at ``coverage`` on the last history period.

    Each candidate forecasts ``history[-1]`` from ``history[:-1]``; the held-out period is not
    used. ``mask`` (boolean per cell) restricts the evaluation to the study area 研究区域.
    Ties keep the earlier candidate. Needs at least two periods.
    """
    if len(history) < 2:
        raise ValueError("choose_params needs at least two history periods")
    cands = list(candidates)
    if not cands:
        raise ValueError("no candidates")
    m = np.ones(cells.size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).ravel()
    actual = cells.counts(history[-1])[m]
    areas = cells.areas[m]
    best, best_pai = cands[0], -math.inf
    for decay, bw in cands:
        s = ew_kde_forecast(history[:-1], cells, decay=decay, bandwidth=bw)[m]
        p = pai(s, actual, areas, coverage)
        if not math.isnan(p) and p > best_pai:
            best, best_pai = (decay, bw), p
    return float(best[0]), float(best[1])
