"""Knox near-repeat test 近重复检验: counts equal a brute-force pair count, a process with
repeats is detected, a process without is not, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiyu.domains.analysis.near_repeat import knox, to_metres
from shiyu.kit.errors import Invalid

SB = (100.0, 200.0, 400.0)
TB = (7.0, 14.0)


def brute(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.zeros((len(SB), len(TB)), dtype=np.int64)
    for a in range(len(x)):
        for b in range(a + 1, len(x)):
            d = float(np.hypot(x[a] - x[b], y[a] - y[b]))
            dt = float(np.floor(abs(t[a] - t[b])))
            si = next((k for k, e in enumerate(SB) if d < e), None)
            ti = next((k for k, e in enumerate(TB) if dt < e), None)
            if si is not None and ti is not None:
                out[si, ti] += 1
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=10, max_value=60), st.integers(min_value=0, max_value=2**31 - 1))
def test_observed_equals_brute_force(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # a small area so that many pairs fall in the bands, with exact band edges sprinkled in
    x = np.round(rng.uniform(0, 500, n), 0)
    y = np.round(rng.uniform(0, 500, n), 0)
    t = np.round(rng.uniform(0, 40, n), 0)
    res = knox(x, y, t, space_bands_m=SB, time_bands_days=TB, permutations=9, seed=1)
    assert res.observed.tolist() == brute(x, y, t).tolist()
    assert res.observed.sum() <= n * (n - 1) // 2
    assert np.all((res.p_value > 0) & (res.p_value <= 1))


def test_edges_are_half_open() -> None:
    # pairs at exactly 100 m / 7 days belong to the second band; 12 far-away fillers
    x = np.array([0.0, 100.0, 0.0] + [10_000.0 * k for k in range(1, 13)])
    y = np.zeros_like(x)
    t = np.array([0.0, 7.0, 6.9] + [100.0 * k for k in range(1, 13)])
    res = knox(x, y, t, space_bands_m=SB, time_bands_days=TB, permutations=9)
    # A=(0, day 0), B=(100 m, day 7), C=(0, day 6.9): A-C same place within the week, A-B at
    # exactly 100 m and 7 days (second bands both), B-C at 100 m within the week
    assert res.observed.tolist() == [[1, 0], [1, 1], [0, 0]]


def _process(rng: np.random.Generator, n: int, repeats: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, t = rng.uniform(0, 8000, n), rng.uniform(0, 8000, n), rng.uniform(0, 365, n)
    if not repeats:
        return x, y, t
    k = n // 3
    src = rng.integers(0, n, k)
    return (np.concatenate([x, x[src] + rng.normal(0, 40, k)]), np.concatenate([y, y[src] + rng.normal(0, 40, k)]),
            np.concatenate([t, t[src] + rng.uniform(0, 5, k)]))


def test_repeats_are_found_and_absence_is_not() -> None:
    rng = np.random.default_rng(7)
    res = knox(*_process(rng, 1500, repeats=True), permutations=99, seed=3)
    assert res.ratio[0, 0] > 5 and res.p_value[0, 0] == pytest.approx(0.01)
    null = knox(*_process(rng, 1500, repeats=False), permutations=99, seed=3)
    assert null.p_value[0, 0] > 0.01
    big = null.expected >= 20
    assert big.any() and np.all(np.abs(null.ratio[big] - 1) < 0.5)
    d = res.as_dict()
    assert d["method"] == "knox" and len(d["observed"]) == 4 and len(d["observed"][0]) == 4


def test_projection_and_bad_input() -> None:
    x, y = to_metres([118.0, 118.01], [32.0, 32.0])
    assert float(x[1] - x[0]) == pytest.approx(944, rel=0.01)
    with pytest.raises(Invalid):
        knox([0.0] * 5, [0.0] * 5, [0.0] * 5)
    with pytest.raises(Invalid):
        knox(np.zeros(20), np.zeros(20), np.zeros(20), space_bands_m=(200, 100))
    with pytest.raises(Invalid):
        knox(np.zeros(20), np.zeros(20), np.full(20, np.nan))
    with pytest.raises(Invalid):
        knox(np.zeros(20), np.zeros(20), np.zeros(20), permutations=3)
