"""Point-to-grid location: find the grid polygon containing a lon/lat point.

``GridLocator`` is built once from the unified grids (网格) of a city and then answers
millions of point look-ups per second. Shapely 2 (GEOS) decides every geometric question;
numpy does the bulk work around it.

How it works
============

Build time

1. A regular raster of roughly ``cells_per_polygon * len(polygons)`` square-ish cells is laid
   over the total bounds of the polygons.
2. Every polygon edge (exterior rings and holes, all parts of MultiPolygons) is rasterised
   *conservatively* with numpy: every cell whose slightly enlarged box the edge could touch is
   marked as a *boundary cell* (extra cells may be marked, none is missed).
3. An unmarked cell is crossed by no edge, so all of its points lie in the same set of
   polygons. Consecutive unmarked cells of a raster row form a run with one answer; the answer
   for each run is found with one STRtree point query (lowest polygon index whose closed
   polygon contains the run's first cell centre, or -1).
4. For each boundary cell the STRtree returns the polygons intersecting its enlarged box;
   they are kept as a short candidate list sorted by polygon index.

Query time

numpy computes the cell of every point; unmarked cells are answered by a table lookup and only
points in boundary cells are resolved, vectorised over points, with
``shapely.intersects_xy`` against their candidates (prepared polygons) in ascending index order,
stopping at the first hit.

Semantics (identical to brute force, for every point): the answer is the lowest index ``i``
with ``shapely.intersects_xy(polygons[i], x, y)``; so a point on a boundary shared by several
grids goes to the one with the lowest index, points outside all polygons and NaN / infinite
coordinates give -1 (``None``).

Robustness: the cell of a point is computed with floating point, so it may be off by a few
ulps at cell edges. Cell boxes are therefore enlarged by a margin (in cell units, far above the
rounding error) both when marking boundary cells and when collecting candidates, so that the
answer of a cell is valid for every point numpy can assign to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely

__all__ = ["GridLocator"]

# Lookup-table encoding: >= 0 polygon index, -1 nothing, <= -2 boundary cell number (-2 - value).
_NONE = -1
_DEFAULT_CELLS_PER_POLYGON = 256
_MIN_CELLS = 16
_MAX_CELLS = 1 << 22  # 4M cells -> 16 MB int32 table
_POLYGONAL = {shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON}


class GridLocator:
    """Locate points in a set of (non-overlapping) grid polygons.

    ``codes[i]`` is the code of ``polygons[i]``. Polygons may be non-convex, have holes, or be
    MultiPolygons; ``None`` or empty geometries never match. The index is built once in the
    constructor; queries do not modify the instance (GEOS prepared geometries cache their
    point-in-area indexes lazily, so concurrent first use from several threads is not vouched for).

    ``cells_per_polygon`` tunes the raster resolution (memory/build time vs. query time);
    the default suits city grids (~3,000 polygons: about 0.3 s build, 3 MB table).
    """

    codes: tuple[str, ...]

    def __init__(
        self,
        codes: Sequence[str],
        polygons: Sequence[shapely.Geometry],
        *,
        cells_per_polygon: int = _DEFAULT_CELLS_PER_POLYGON,
    ) -> None:
        self.codes = tuple(codes)
        geoms = np.array(list(polygons), dtype=object)
        if geoms.ndim != 1:
            geoms = geoms.reshape(-1)
        if len(self.codes) != len(geoms):
            raise ValueError(f"{len(self.codes)} codes but {len(geoms)} polygons")
        if len(geoms):
            missing = shapely.is_missing(geoms)
            present = ~missing
            if not all(isinstance(g, shapely.Geometry) for g in geoms[present]):
                raise TypeError("polygons must be shapely geometries (or None)")
            types = shapely.get_type_id(geoms[present])
            empty = shapely.is_empty(geoms[present])
            bad = ~np.isin(types, [int(t) for t in _POLYGONAL]) & ~empty
            if bad.any():
                raise TypeError("polygons must be Polygon or MultiPolygon geometries")
            # Private copies, so that preparing them does not touch the caller's objects.
            geoms = geoms.copy()
            geoms[present] = shapely.from_wkb(shapely.to_wkb(geoms[present]))
            shapely.prepare(geoms[present])
        self._geoms = geoms
        self._code_array = np.array(self.codes + (None,), dtype=object)  # [-1] -> None
        self._tree = shapely.STRtree(geoms)
        self._build(max(1, int(cells_per_polygon)))

    # ------------------------------------------------------------------ build

    def _build(self, cells_per_polygon: int) -> None:
        geoms = self._geoms
        valid = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
        n_valid = int(valid.sum())
        if n_valid == 0:
            self._empty = True
            self._bounds = (math.inf, math.inf, -math.inf, -math.inf)
            self._x0 = self._y0 = 0.0
            self._inv_w = self._inv_h = 1.0
            self._nx = self._ny = 1
            self._table = np.full(2, _NONE, dtype=np.int32)
            self._cand_off = np.zeros(1, dtype=np.int64)
            self._cand = np.zeros(0, dtype=np.int32)
            return
        self._empty = False
        minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(geoms[valid]))
        self._bounds = (minx, miny, maxx, maxy)
        width, height = maxx - minx, maxy - miny

        n_cells = min(max(n_valid * cells_per_polygon, _MIN_CELLS), _MAX_CELLS)
        if width > 0 and height > 0:
            side = math.sqrt(width * height / n_cells)
        else:  # degenerate (zero-area) bounds
            side = max(width, height) / math.sqrt(n_cells) or 1.0
        nx = max(1, min(round(width / side), n_cells))
        ny = max(1, min(round(height / side), n_cells))
        w = width / nx if width > 0 else side
        h = height / ny if height > 0 else side
        self._x0, self._y0 = minx, miny
        self._inv_w, self._inv_h = 1.0 / w, 1.0 / h
        self._nx, self._ny = nx, ny

        # Margin in cell units: much larger than the rounding error of computing a cell
        # coordinate ((x - x0) * inv_w), which is a few ulps of the coordinates.
        max_abs = max(abs(minx), abs(maxx), abs(miny), abs(maxy), 1e-300)
        eps = max(1e-6, 1e3 * float(np.spacing(max_abs)) / min(w, h))

        boundary = self._mark_boundary_cells(eps)
        table = np.full(nx * ny + 1, _NONE, dtype=np.int32)  # last entry: sentinel for "outside"

        # Runs of unmarked cells along rows share one answer: query one centre per run.
        flat = boundary.reshape(-1)
        free = ~flat
        starts = free.copy()
        starts[1:] &= flat[:-1] | (np.arange(1, flat.size) % nx == 0)
        run_first = np.flatnonzero(starts)
        if run_first.size:
            run_id = np.cumsum(starts) - 1
            cx = minx + ((run_first % nx) + 0.5) * w
            cy = miny + ((run_first // nx) + 0.5) * h
            owner = self._lowest_hit(shapely.points(cx, cy))
            free_cells = np.flatnonzero(free)
            table[free_cells] = owner[run_id[free_cells]]

        # Boundary cells: candidates = polygons intersecting the enlarged cell box.
        bcells = np.flatnonzero(flat)
        if bcells.size:
            bi = bcells % nx
            bj = bcells // nx
            boxes = shapely.box(
                minx + (bi - eps) * w,
                miny + (bj - eps) * h,
                minx + (bi + 1 + eps) * w,
                miny + (bj + 1 + eps) * h,
            )
            qi, pi = self._tree.query(boxes, predicate="intersects")
            order = np.lexsort((pi, qi))
            qi, pi = qi[order], pi[order]
            counts = np.bincount(qi, minlength=bcells.size)
            # No candidate: stays -1. A single candidate that covers the box -> that polygon.
            single = np.flatnonzero(counts == 1)
            if single.size:
                first = np.searchsorted(qi, single)
                covered = shapely.covers(geoms[pi[first]], boxes[single])
                table[bcells[single[covered]]] = pi[first][covered]
                counts[single[covered]] = 0
                keep_pair = np.ones(qi.size, dtype=bool)
                keep_pair[first[covered]] = False
                qi, pi = qi[keep_pair], pi[keep_pair]
            multi = np.flatnonzero(counts > 0)
            table[bcells[multi]] = -2 - np.arange(multi.size, dtype=np.int32)
            self._cand_off = np.concatenate(([0], np.cumsum(counts[multi]))).astype(np.int64)
            self._cand = pi.astype(np.int32)
        else:
            self._cand_off = np.zeros(1, dtype=np.int64)
            self._cand = np.zeros(0, dtype=np.int32)
        self._table = table

    def _lowest_hit(self, points: np.ndarray) -> np.ndarray:
        """Lowest polygon index intersecting each point (-1 if none)."""
        out = np.full(len(points), np.iinfo(np.int64).max, dtype=np.int64)
        qi, pi = self._tree.query(points, predicate="intersects")
        np.minimum.at(out, qi, pi)
        out[out == np.iinfo(np.int64).max] = _NONE
        return out

    def _mark_boundary_cells(self, eps: float) -> np.ndarray:
        """Boolean (ny, nx) raster: True for every cell an edge may touch (conservative)."""
        nx, ny = self._nx, self._ny
        mask = np.zeros((ny, nx), dtype=bool)
        parts = shapely.get_parts(self._geoms[~shapely.is_missing(self._geoms)])
        rings = shapely.get_rings(parts[~shapely.is_empty(parts)])
        coords, ring_idx = shapely.get_coordinates(rings, return_index=True)
        if coords.shape[0] < 2:
            return mask
        u = (coords[:, 0] - self._x0) * self._inv_w
        v = (coords[:, 1] - self._y0) * self._inv_h
        same = ring_idx[1:] == ring_idx[:-1]
        u1, v1, u2, v2 = u[:-1][same], v[:-1][same], u[1:][same], v[1:][same]
        flat_x = np.abs(u2 - u1) >= np.abs(v2 - v1)
        # Shallow segments: walk columns, compute row ranges. Steep: walk rows, column ranges.
        # Margin 2 * eps: strictly more than needed, so exact ties never drop a cell.
        margin = 2.0 * eps
        ci, cj = _supercover(u1[flat_x], v1[flat_x], u2[flat_x], v2[flat_x], nx, ny, margin)
        mask[cj, ci] = True
        rj, ri = _supercover(v1[~flat_x], u1[~flat_x], v2[~flat_x], u2[~flat_x], ny, nx, margin)
        mask[rj, ri] = True
        return mask

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.codes)

    def __repr__(self) -> str:
        n_boundary = self._cand_off.size - 1
        return (
            f"GridLocator({len(self.codes)} polygons, raster {self._nx}x{self._ny}, "
            f"{n_boundary} boundary cells)"
        )

    def locate(self, lon: float, lat: float) -> str | None:
        """Code of the grid containing (lon, lat), or None."""
        i = self.locate_index(lon, lat)
        return None if i < 0 else self.codes[i]

    def locate_index(self, lon: float, lat: float) -> int:
        """Index into ``codes`` of the grid containing (lon, lat), or -1."""
        x, y = float(lon), float(lat)
        minx, miny, maxx, maxy = self._bounds
        if not (minx <= x <= maxx and miny <= y <= maxy):  # also rejects NaN
            return _NONE
        # Same float operations as the vectorised path, so both always agree.
        ix = min(int((x - self._x0) * self._inv_w), self._nx - 1)
        iy = min(int((y - self._y0) * self._inv_h), self._ny - 1)
        value = int(self._table[iy * self._nx + ix])
        if value > -2:
            return value
        b = -2 - value
        for p in self._cand[self._cand_off[b] : self._cand_off[b + 1]]:
            if shapely.intersects_xy(self._geoms[p], x, y):
                return int(p)
        return _NONE

    def locate_index_many(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Indexes into ``codes`` (int64, -1 where no grid contains the point)."""
        x, y = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        shape = x.shape
        x = x.reshape(-1)
        y = y.reshape(-1)
        if self._empty or x.size == 0:
            return np.full(shape, _NONE, dtype=np.int64)
        minx, miny, maxx, maxy = self._bounds
        nx, ny = self._nx, self._ny

        inside = (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)  # NaN -> False
        fx = x - self._x0
        fx *= self._inv_w
        fy = y - self._y0
        fy *= self._inv_h
        np.clip(fx, 0.0, nx - 1, out=fx)
        np.clip(fy, 0.0, ny - 1, out=fy)
        outside = ~inside
        fx[outside] = 0.0
        fy[outside] = 0.0
        cell = fy.astype(np.int64)
        cell *= nx
        cell += fx.astype(np.int64)
        cell[outside] = nx * ny  # sentinel entry, always -1
        values = self._table[cell]
        result = values.astype(np.int64)

        pending = np.flatnonzero(values <= -2)
        if pending.size:
            result[pending] = self._resolve(pending, -2 - values[pending].astype(np.int64), x, y)
        return result.reshape(shape)

    def _resolve(self, idx: np.ndarray, bcell: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Answer points ``idx`` lying in boundary cells ``bcell`` by exact tests on candidates."""
        out = np.full(idx.size, _NONE, dtype=np.int64)
        start = self._cand_off[bcell]
        count = self._cand_off[bcell + 1] - start
        todo = np.arange(idx.size)
        k = 0
        while todo.size:
            poly = self._cand[start[todo] + k]
            pts = idx[todo]
            hit = shapely.intersects_xy(self._geoms[poly], x[pts], y[pts])
            out[todo[hit]] = poly[hit]
            todo = todo[~hit]
            k += 1
            todo = todo[count[todo] > k]
        return out

    def locate_many(
        self, lon: np.ndarray | Sequence[float], lat: np.ndarray | Sequence[float]
    ) -> list[str | None]:
        """Codes of the grids containing each point (None where none)."""
        idx = self.locate_index_many(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        return self._code_array[idx.reshape(-1)].tolist()


def _supercover(
    a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray, na: int, nb: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cells (ia, ib) within ``eps`` of segments whose extent along a is >= extent along b.

    Coordinates are in cell units. Walking along the major axis a keeps the interpolated
    b-coordinates accurate (|slope| <= 1), so ``eps`` covers the rounding error.
    """
    if a1.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    amin = np.minimum(a1, a2)
    amax = np.maximum(a1, a2)
    da = a2 - a1
    slope = np.divide(b2 - b1, da, out=np.zeros_like(da), where=da != 0)
    i0 = np.clip(np.floor(amin - eps), 0, na - 1).astype(np.int64)
    i1 = np.clip(np.floor(amax + eps), 0, na - 1).astype(np.int64)
    steps = i1 - i0 + 1
    seg = np.repeat(np.arange(a1.size), steps)
    offset = np.arange(seg.size) - np.repeat(np.cumsum(steps) - steps, steps)
    ia = i0[seg] + offset
    # Part of the segment with a in the (enlarged) column [ia - eps, ia + 1 + eps].
    lo = np.maximum(amin[seg], ia - eps)
    hi = np.minimum(amax[seg], ia + 1 + eps)
    hi = np.maximum(hi, lo)
    blo = b1[seg] + (lo - a1[seg]) * slope[seg]
    bhi = b1[seg] + (hi - a1[seg]) * slope[seg]
    bmin = np.minimum(blo, bhi)
    bmax = np.maximum(blo, bhi)
    # Never exceed the segment's own b-range (guards the interpolation at the ends).
    sbmin = np.minimum(b1, b2)[seg]
    sbmax = np.maximum(b1, b2)[seg]
    bmin = np.maximum(bmin, sbmin) - eps
    bmax = np.minimum(bmax, sbmax) + eps
    j0 = np.clip(np.floor(bmin), 0, nb - 1).astype(np.int64)
    j1 = np.maximum(np.clip(np.floor(bmax), 0, nb - 1).astype(np.int64), j0)
    rows = j1 - j0 + 1
    rep = np.repeat(np.arange(ia.size), rows)
    roff = np.arange(rep.size) - np.repeat(np.cumsum(rows) - rows, rows)
    return ia[rep], j0[rep] + roff
