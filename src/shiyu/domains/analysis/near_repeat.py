"""Near-repeat analysis 近重复模式 (the Knox test, as in Ratcliffe's Near Repeat Calculator).

After a burglary or a fight, more of the same tends to follow close by, soon: that is the
"near repeat" pattern that short-term hot-spot forecasts rest on. The Knox test counts
pairs of incidents that are close in both space and time and compares that count with
what the same places would give if the times were shuffled among them (a Monte Carlo
permutation test, so no distribution is assumed):

* every pair of incidents within the largest distance band is found once (k-d tree);
* each pair falls into one space band x time band cell (bands are half-open: the first
  space band ``[0, 100)`` m holds same-place repeats; time bands count whole days);
* the times are permuted ``permutations`` times with a seed; the pairs stay the same, so
  each permutation only re-bands the time differences;
* per cell: observed pairs, the mean over permutations (expected), the Knox ratio
  observed / expected, and the pseudo p-value ``(1 + #{perm >= observed}) / (1 + P)``.

Coordinates are projected to metres with a local equirectangular projection, which is
accurate to well under 1% across a city.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from shiyu.kit.errors import Invalid

_M_PER_DEG = 111_320.0
SPACE_BANDS_M = (100.0, 200.0, 400.0, 800.0)
TIME_BANDS_DAYS = (7.0, 14.0, 21.0, 28.0)
MIN_EVENTS = 10


@dataclass(frozen=True)
class KnoxResult:
    """The Knox table 近重复检验表: rows are space bands, columns time bands."""

    n: int
    space_bands_m: tuple[float, ...]
    time_bands_days: tuple[float, ...]
    observed: npt.NDArray[np.int64]
    expected: npt.NDArray[np.float64]
    p_value: npt.NDArray[np.float64]
    permutations: int
    seed: int

    @property
    def ratio(self) -> npt.NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.expected > 0, self.observed / np.where(self.expected > 0, self.expected, 1), np.nan)

    def as_dict(self) -> dict[str, Any]:
        def clean(a: npt.NDArray[Any]) -> list[list[float | int | None]]:
            return [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in a.tolist()]

        return {"method": "knox", "n": self.n, "space_bands_m": list(self.space_bands_m),
                "time_bands_days": list(self.time_bands_days), "permutations": self.permutations,
                "seed": self.seed, "observed": self.observed.tolist(), "expected": clean(self.expected),
                "ratio": clean(self.ratio), "p_value": clean(self.p_value)}


def to_metres(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Local equirectangular projection around the points' mean latitude."""
    lo = np.asarray(lon, dtype=np.float64)
    la = np.asarray(lat, dtype=np.float64)
    if lo.size == 0:
        return lo, la
    k = math.cos(math.radians(float(np.mean(la))))
    return lo * _M_PER_DEG * k, la * _M_PER_DEG


def _bands(values: npt.NDArray[np.float64], edges: Sequence[float]) -> npt.NDArray[np.int64]:
    """Index of the half-open band ``[edges[i-1], edges[i])`` each value falls in; len(edges)
    when beyond the last edge."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right").astype(np.int64)


def knox(x_m: npt.ArrayLike, y_m: npt.ArrayLike, t_days: npt.ArrayLike, *,
         space_bands_m: Sequence[float] = SPACE_BANDS_M, time_bands_days: Sequence[float] = TIME_BANDS_DAYS,
         permutations: int = 99, seed: int = 12345) -> KnoxResult:
    """The Knox near-repeat table for incidents at ``(x_m, y_m)`` metres and times
    ``t_days`` (days, any origin)."""
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    t = np.asarray(t_days, dtype=np.float64)
    if not (x.shape == y.shape == t.shape) or x.ndim != 1:
        raise Invalid("x, y and t must be one-dimensional and of the same length", code="knox_shape")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(t))):
        raise Invalid("coordinates and times must be finite", code="knox_values")
    sb = tuple(float(b) for b in space_bands_m)
    tb = tuple(float(b) for b in time_bands_days)
    if not sb or not tb or any(b <= 0 for b in sb + tb) or list(sb) != sorted(set(sb)) or list(tb) != sorted(set(tb)):
        raise Invalid("bands must be positive and strictly increasing", code="knox_bands", field="bands")
    if not 9 <= permutations <= 9999:
        raise Invalid("permutations must be between 9 and 9999", code="knox_permutations", field="permutations")
    n = int(x.size)
    shape = (len(sb), len(tb))
    if n < MIN_EVENTS:
        raise Invalid(f"the Knox test needs at least {MIN_EVENTS} incidents with coordinates, got {n}",
                      code="knox_too_few", field="period")
    tree = cKDTree(np.column_stack([x, y]))
    # Pairs strictly closer than the last edge (the bands are half-open).
    pairs = tree.query_pairs(r=np.nextafter(sb[-1], 0), output_type="ndarray")
    i, j = (pairs[:, 0], pairs[:, 1]) if len(pairs) else (np.empty(0, np.int64), np.empty(0, np.int64))
    d = np.hypot(x[i] - x[j], y[i] - y[j])
    s_band = _bands(d, sb)
    keep = s_band < len(sb)
    i, j, s_band = i[keep], j[keep], s_band[keep]

    def table(times: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        dt = np.floor(np.abs(times[i] - times[j]))
        t_band = _bands(dt, tb)
        ok = t_band < len(tb)
        out = np.zeros(shape, dtype=np.int64)
        np.add.at(out, (s_band[ok], t_band[ok]), 1)
        return out

    observed = table(t)
    rng = np.random.default_rng(seed)
    total = np.zeros(shape, dtype=np.float64)
    at_least = np.zeros(shape, dtype=np.int64)
    for _ in range(permutations):
        sim = table(rng.permutation(t))
        total += sim
        at_least += sim >= observed
    return KnoxResult(n=n, space_bands_m=sb, time_bands_days=tb, observed=observed,
                      expected=total / permutations, p_value=(1 + at_least) / (1 + permutations),
                      permutations=permutations, seed=seed)
