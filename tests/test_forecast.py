"""Hot-spot forecast 热点预测: PAI/PEI, the raster, the EW-KDE forecast and parameter choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shiyu.domains.analysis.forecast import (
    CellGrid,
    choose_params,
    counts_from_index,
    ew_kde_at,
    ew_kde_forecast,
    flag_cells,
    naive_forecast,
    pai,
    pei,
    period_weights,
)

ONES4 = np.ones(4)


# --------------------------------------------------------------------------- PAI / PEI


def test_pai_pei_hand_computed() -> None:
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    actual = np.array([1.0, 0.0, 2.0, 1.0])
    # half the area: cells 0, 1 -> 1 hit of 4 events -> (1/4) / (2/4)
    assert pai(scores, actual, ONES4, 0.5) == pytest.approx(0.5, abs=0, rel=1e-12)
    # best two cells by actual counts: cell 2 (2), then cell 0 (1; tie with cell 3, lower id) -> 3
    assert pei(scores, actual, ONES4, 0.5) == pytest.approx(1 / 3, rel=1e-12)
    # a quarter: cell 0 only -> (1/4) / (1/4)
    assert pai(scores, actual, ONES4, 0.25) == pytest.approx(1.0, rel=1e-12)
    assert pei(scores, actual, ONES4, 0.25) == pytest.approx(0.5, rel=1e-12)
    # everything: PAI 1, PEI 1
    assert pai(scores, actual, ONES4, 1.0) == pytest.approx(1.0, rel=1e-12)
    assert pei(scores, actual, ONES4, 1.0) == pytest.approx(1.0, rel=1e-12)


def test_pai_unequal_areas() -> None:
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    actual = np.array([3.0, 1.0, 0.0, 0.0])
    areas = np.array([1.0, 1.0, 2.0, 4.0])
    # 25% of 8 = 2: cells 0 and 1 exactly -> (4/4) / (2/8) = 4
    assert pai(scores, actual, areas, 0.25) == pytest.approx(4.0, rel=1e-12)
    # 30%: crosses into cell 2 -> area 4 of 8 -> (4/4) / (4/8) = 2
    assert pai(scores, actual, areas, 0.3) == pytest.approx(2.0, rel=1e-12)


def test_coverage_handling() -> None:
    areas = np.ones(10)
    s = np.arange(10.0)
    assert len(flag_cells(s, areas, 0.1)) == 1
    assert len(flag_cells(s, areas, 0.11)) == 2  # the crossing cell is included
    assert len(flag_cells(s, areas, 0.3)) == 3  # float round-off does not add a cell
    assert len(flag_cells(s, areas, 1.0)) == 10
    assert len(flag_cells(s, areas, 0.001)) == 1
    assert list(flag_cells(s, areas, 0.2)) == [9, 8]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            flag_cells(s, areas, bad)
    with pytest.raises(ValueError):
        flag_cells(s, np.ones(3), 0.5)


def test_ties_are_deterministic() -> None:
    s = np.zeros(6)
    assert list(flag_cells(s, np.ones(6), 0.5)) == [0, 1, 2]
    s = np.array([1.0, 2.0, 2.0, 0.0, 2.0])
    assert list(flag_cells(s, np.ones(5), 0.6)) == [1, 2, 4]


def test_pei_is_one_when_scores_equal_actual() -> None:
    rng = np.random.default_rng(3)
    actual = rng.poisson(0.7, 500).astype(float)
    areas = np.ones(500)
    for cov in (0.01, 0.05, 0.2, 1.0):
        assert pei(actual, actual, areas, cov) == pytest.approx(1.0)


def test_perfect_forecast_has_maximal_pai() -> None:
    rng = np.random.default_rng(4)
    actual = rng.poisson(0.5, 400).astype(float)
    areas = np.ones(400)
    for cov in (0.01, 0.05, 0.25):
        best = pai(actual, actual, areas, cov)
        for _ in range(30):
            assert pai(rng.random(400), actual, areas, cov) <= best + 1e-12
        assert best == pytest.approx(max(pai(actual + 1e-3 * rng.random(400), actual, areas, cov), best))


def test_no_events_is_nan() -> None:
    assert math.isnan(pai(ONES4, np.zeros(4), ONES4, 0.5))
    assert math.isnan(pei(ONES4, np.zeros(4), ONES4, 0.5))


# --------------------------------------------------------------------------- CellGrid


def test_cell_grid_indexing() -> None:
    g = CellGrid(0.0, 0.0, 1000.0, 600.0, 200.0)
    assert (g.nx, g.ny, g.size, g.shape) == (5, 3, 15, (3, 5))
    pts = np.array([[0.0, 0.0], [199.9, 0.0], [200.0, 0.0], [999.0, 599.0], [450.0, 250.0],
                    [-1.0, 10.0], [10.0, 600.0], [1000.0, 10.0], [np.nan, 5.0]])
    assert g.index(pts).tolist() == [0, 0, 1, 14, 7, -1, -1, -1, -1]
    assert np.allclose(g.areas, 40_000.0)
    c = g.centres()
    assert c.shape == (15, 2)
    assert g.index(c).tolist() == list(range(15))
    assert g.counts(pts).tolist() == [2, 1] + [0] * 5 + [1] + [0] * 6 + [1]
    # a raster that does not divide evenly covers the bounds
    h = CellGrid(0.0, 0.0, 1001.0, 10.0, 200.0)
    assert h.nx == 6 and h.index(np.array([[1000.5, 1.0]])).tolist() == [5]
    with pytest.raises(ValueError):
        CellGrid(0, 0, 1, 1, 0)


def test_counts_from_index_and_around() -> None:
    assert counts_from_index([0, 2, 2, -1, 7], 3).tolist() == [1.0, 0.0, 2.0]
    g = CellGrid.around(np.array([[10.0, 20.0], [410.0, 220.0]]), 100.0, margin=50.0)
    assert (g.xmin, g.ymin) == (-40.0, -30.0) and g.nx == 5 and g.ny == 3


# --------------------------------------------------------------------------- EW-KDE


def _spot_history(rng: np.random.Generator, periods: int, spot: tuple[float, float] = (3100.0, 2100.0),
                  n_spot: int = 20, n_noise: int = 200, size: float = 10_000.0) -> list[np.ndarray]:
    out = []
    for _ in range(periods):
        hot = rng.normal(spot, 60.0, size=(rng.poisson(n_spot), 2))
        noise = rng.uniform(0, size, size=(rng.poisson(n_noise), 2))
        out.append(np.vstack([hot, noise]))
    return out


def test_period_weights() -> None:
    assert period_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]
    assert period_weights(3, 0.0).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        period_weights(2, 1.5)


def test_ew_kde_properties() -> None:
    rng = np.random.default_rng(7)
    hist = _spot_history(rng, 6)
    g = CellGrid(-2000.0, -2000.0, 12_000.0, 12_000.0, 200.0)  # margin: no mass lost at the edges
    f = ew_kde_forecast(hist, g, decay=0.6, bandwidth=300.0)
    assert f.shape == (g.size,)
    assert (f >= 0).all()
    total = sum(0.6 ** (5 - i) * len(p) for i, p in enumerate(hist))
    assert f.sum() == pytest.approx(total, rel=1e-9)
    # the stationary hot spot gets the top score
    assert int(np.argmax(f)) == int(g.index(np.array([[3100.0, 2100.0]]))[0])
    # zero bandwidth and decay 0: the naive forecast
    assert np.array_equal(ew_kde_forecast(hist, g, decay=0.0, bandwidth=0.0), naive_forecast(hist[-1], g))


def test_ew_kde_at_matches_raster() -> None:
    rng = np.random.default_rng(8)
    hist = _spot_history(rng, 3, n_noise=50)
    g = CellGrid(-2000.0, -2000.0, 12_000.0, 12_000.0, 100.0)
    f = ew_kde_forecast(hist, g, decay=0.5, bandwidth=400.0)
    c = g.centres()
    d = ew_kde_at(hist, c, decay=0.5, bandwidth=400.0) * g.areas
    assert np.abs(f - d).max() < 0.05 * f.max()  # binning to cells moves points <= 71 m
    assert d.sum() == pytest.approx(f.sum(), rel=1e-3)


def test_choose_params_uses_history_only() -> None:
    rng = np.random.default_rng(9)
    hist = _spot_history(rng, 5)
    g = CellGrid(0.0, 0.0, 10_000.0, 10_000.0, 200.0)
    cands = [(0.0, 0.0), (0.5, 200.0), (0.8, 400.0)]
    best = choose_params(hist, g, cands)
    assert best in cands
    # the last history period is the validation target, forecast from the periods before it
    scores = [pai(ew_kde_forecast(hist[:-1], g, decay=d, bandwidth=b), g.counts(hist[-1]), g.areas, 0.05)
              for d, b in cands]
    assert best == cands[int(np.argmax(scores))]
    with pytest.raises(ValueError):
        choose_params(hist[:1], g, cands)


def test_ew_kde_beats_naive_on_persistent_hot_spot() -> None:
    rng = np.random.default_rng(11)
    g = CellGrid(0.0, 0.0, 10_000.0, 10_000.0, 200.0)
    wins = []
    for _ in range(5):
        hist = _spot_history(rng, 13, n_spot=20, n_noise=300)
        train, target = hist[:-1], hist[-1]
        actual = g.counts(target)
        f = ew_kde_forecast(train, g, decay=0.7, bandwidth=150.0)
        n = naive_forecast(train[-1], g)
        wins.append(pai(f, actual, g.areas, 0.05) >= pai(n, actual, g.areas, 0.05))
    assert all(wins)
