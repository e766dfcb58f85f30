"""GridLocator must agree with brute force on every point (lowest index whose polygon contains it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiyu.domains.geo.locator import GridLocator


def brute_force(polygons, x, y) -> np.ndarray:
    """For each point: lowest i with shapely.intersects_xy(polygons[i], x, y), else -1."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    out = np.full(x.shape, -1, dtype=np.int64)
    for i in range(len(polygons) - 1, -1, -1):
        if polygons[i] is None:
            continue
        out[shapely.intersects_xy(polygons[i], x, y)] = i
    return out


def voronoi_tiling(seeds: np.ndarray, outline: shapely.Geometry) -> list[shapely.Geometry]:
    minx, miny, maxx, maxy = outline.bounds
    envelope = shapely.box(minx - 10, miny - 10, maxx + 10, maxy + 10)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=envelope))
    clipped = shapely.intersection(cells, outline)
    return [g for g in clipped if not g.is_empty and g.area > 0]


def irregular_outline(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> shapely.Geometry:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1 + 0.15 * np.sin(3 * t) + 0.08 * np.cos(7 * t)
    return shapely.Polygon(np.c_[cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)])


def edge_points(polygons, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (exactly) plus points interpolated along edges (on or within ulps of them)."""
    coords = shapely.get_coordinates(shapely.get_rings(shapely.get_parts(polygons)))
    coords = coords[rng.permutation(len(coords))]
    verts = coords[: n // 2]
    a = coords[:-1][: n // 2]
    b = coords[1:][: n // 2]
    t = rng.uniform(0, 1, size=(len(a), 1))
    mids = a + t * (b - a)
    pts = np.vstack([verts, mids])
    return pts[:, 0], pts[:, 1]


@pytest.fixture(scope="module")
def city() -> tuple[list[str], list[shapely.Geometry]]:
    """~400 irregular Voronoi grids in an irregular outline, plus holes and a MultiPolygon."""
    rng = np.random.default_rng(7)
    outline = irregular_outline(118.8, 32.05, 0.8, 0.6)
    minx, miny, maxx, maxy = outline.bounds
    seeds = rng.uniform([minx, miny], [maxx, maxy], size=(600, 2))
    seeds = seeds[shapely.contains_xy(outline, seeds[:, 0], seeds[:, 1])][:400]
    polys = voronoi_tiling(seeds, outline)

    # A non-convex polygon with a hole: carve a notch and a hole out of grid 10; the hole is
    # filled by a new grid, the notch is left empty (outside every grid).
    base = polys[10]
    c = base.centroid
    r = math.sqrt(base.area) * 0.2
    hole = shapely.box(c.x - r, c.y - r, c.x + r, c.y + r)
    tip = c.x + 1.5 * r
    notch = shapely.Polygon(
        [(tip, c.y), (base.bounds[2] + 1, c.y - 0.3 * r), (base.bounds[2] + 1, c.y + 0.3 * r)]
    )
    polys[10] = base.difference(hole.buffer(r * 0.1, join_style="mitre")).difference(notch)
    # Hole filler (shares no edge with the hole, leaving a thin empty ring around it).
    polys.append(hole)
    # A MultiPolygon made of two non-adjacent grids.
    polys[20] = shapely.MultiPolygon([polys[20], polys[200]])
    del polys[200]
    # Shuffle so that "lowest index" tie-breaking is not aligned with space.
    order = rng.permutation(len(polys))
    polys = [polys[i] for i in order]
    codes = [f"320102{i:06d}" for i in range(len(polys))]
    return codes, polys


def test_tiling_fixture_is_sane(city):
    _, polys = city
    types = {shapely.get_type_id(p) for p in polys}
    assert types == {int(shapely.GeometryType.POLYGON), int(shapely.GeometryType.MULTIPOLYGON)}
    assert any(len(p.interiors) for p in polys if p.geom_type == "Polygon")
    assert all(p.is_valid for p in polys)


def test_matches_brute_force_on_20000_points(city):
    codes, polys = city
    loc = GridLocator(codes, polys)
    assert len(loc) == len(polys)
    assert loc.codes == tuple(codes)
    rng = np.random.default_rng(11)
    minx, miny, maxx, maxy = shapely.total_bounds(polys)
    dx, dy = maxx - minx, maxy - miny
    rx = rng.uniform(minx - 0.1 * dx, maxx + 0.1 * dx, 14_000)
    ry = rng.uniform(miny - 0.1 * dy, maxy + 0.1 * dy, 14_000)
    ex, ey = edge_points(polys, rng, 6_000)
    # Exactly on the bounds, and far outside.
    bx = np.array([minx, maxx, minx, maxx, (minx + maxx) / 2, -1e9, 1e9, 0.0])
    by = np.array([miny, maxy, maxy, miny, maxy, 0.0, 0.0, 0.0])
    x = np.concatenate([rx, ex, bx])
    y = np.concatenate([ry, ey, by])
    got = loc.locate_index_many(x, y)
    want = brute_force(polys, x, y)
    assert got.dtype == np.int64
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:20]
    # The sample really exercises shared boundaries and the outside.
    on_several = sum(shapely.intersects_xy(p, ex, ey).astype(int) for p in polys) >= 2
    assert on_several.sum() > 1000
    assert (want == -1).sum() > 1000


def test_callers_geometries_are_not_prepared():
    polys = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)]
    loc = GridLocator(["a", "b"], polys)
    assert loc.locate(0.5, 0.5) == "a"
    assert loc.locate(1.0, 0.5) == "a"
    assert loc.locate(1.5, 0.5) == "b"
    assert not shapely.is_prepared(np.array(polys, dtype=object)).any()


def test_single_point_locate_agrees(city):
    codes, polys = city
    loc = GridLocator(codes, polys)
    rng = np.random.default_rng(3)
    ex, ey = edge_points(polys, rng, 400)
    minx, miny, maxx, maxy = shapely.total_bounds(polys)
    x = np.concatenate([ex, rng.uniform(minx - 0.05, maxx + 0.05, 400)])
    y = np.concatenate([ey, rng.uniform(miny - 0.05, maxy + 0.05, 400)])
    want = brute_force(polys, x, y)
    for xi, yi, wi in zip(x, y, want, strict=True):
        assert loc.locate_index(xi, yi) == wi
        assert loc.locate(xi, yi) == (None if wi < 0 else codes[wi])
    many = loc.locate_many(x, y)
    assert many == [None if w < 0 else codes[w] for w in want]
    assert loc.locate_many(list(x[:5]), list(y[:5])) == many[:5]


def test_point_inside_a_grid_gets_its_code(city):
    codes, polys = city
    loc = GridLocator(codes, polys)
    for i in (0, 5, 17, len(polys) - 1):
        p = polys[i].point_on_surface()
        assert loc.locate(p.x, p.y) == codes[i]


def test_axis_aligned_grid_with_raster_aligned_edges():
    """Squares whose edges coincide with raster cell edges; points exactly on edges/corners."""
    polys, codes = [], []
    for j in range(4):
        for i in range(4):
            polys.append(shapely.box(i, j, i + 1, j + 1))
            codes.append(f"{i}-{j}")
    order = [5, 0, 15, 3, 12, 1, 2, 4, 6, 7, 8, 9, 10, 11, 13, 14]
    polys = [polys[k] for k in order]
    codes = [codes[k] for k in order]
    g = np.arange(-0.5, 4.75, 0.25)
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    for cpp in (1, 4, 16, 64, 1000):
        loc = GridLocator(codes, polys, cells_per_polygon=cpp)
        assert np.array_equal(loc.locate_index_many(x, y), brute_force(polys, x, y))
    # A corner shared by four squares goes to the lowest index among them.
    loc = GridLocator(codes, polys)
    assert loc.locate(1.0, 1.0) == codes[min(order.index(k) for k in (0, 1, 4, 5))]


def test_empty_locator():
    loc = GridLocator([], [])
    assert len(loc) == 0
    assert loc.codes == ()
    assert loc.locate(118.8, 32.05) is None
    assert loc.locate(math.nan, 0.0) is None
    out = loc.locate_index_many(np.array([1.0, 2.0, math.nan]), np.array([1.0, 2.0, 3.0]))
    assert out.dtype == np.int64
    assert out.tolist() == [-1, -1, -1]
    assert loc.locate_many([1.0], [2.0]) == [None]
    assert loc.locate_index_many(np.zeros(0), np.zeros(0)).shape == (0,)


def test_only_empty_or_missing_geometries():
    loc = GridLocator(["a", "b"], [shapely.Polygon(), None])
    assert len(loc) == 2
    assert loc.locate_index_many(np.array([0.0]), np.array([0.0])).tolist() == [-1]
    assert loc.locate(0.0, 0.0) is None


def test_nan_and_inf_coordinates(city):
    codes, polys = city
    loc = GridLocator(codes, polys)
    p = polys[0].point_on_surface()
    x = np.array([math.nan, p.x, math.nan, math.inf, -math.inf, p.x, p.x])
    y = np.array([p.y, math.nan, math.nan, p.y, p.y, math.inf, p.y])
    assert loc.locate_index_many(x, y).tolist() == [-1, -1, -1, -1, -1, -1, 0]
    assert loc.locate(math.nan, p.y) is None
    assert loc.locate(p.x, math.inf) is None


def test_shapes_and_broadcasting(city):
    codes, polys = city
    loc = GridLocator(codes, polys)
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = shapely.total_bounds(polys)
    x = rng.uniform(minx, maxx, (30, 40))
    y = rng.uniform(miny, maxy, (30, 40))
    got = loc.locate_index_many(x, y)
    assert got.shape == (30, 40)
    assert np.array_equal(got.ravel(), brute_force(polys, x.ravel(), y.ravel()))
    assert loc.locate_index_many(x[0], y[0][0]).shape == (40,)


def test_overlapping_polygons_lowest_index_wins():
    polys = [shapely.box(0, 0, 2, 2), shapely.box(1, 1, 3, 3), shapely.Point(1.5, 1.5).buffer(1.0)]
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 3.5, 5000)
    y = rng.uniform(-0.5, 3.5, 5000)
    for perm in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        ps = [polys[k] for k in perm]
        loc = GridLocator(["a", "b", "c"], ps)
        assert np.array_equal(loc.locate_index_many(x, y), brute_force(ps, x, y))


def test_projected_coordinates():
    """Large coordinates (metres, CGCS2000 / 3-degree Gauss-Kruger) keep exact answers."""
    rng = np.random.default_rng(2)
    outline = irregular_outline(40_500_000.0, 3_550_000.0, 80_000.0, 60_000.0)
    minx, miny, maxx, maxy = outline.bounds
    seeds = rng.uniform([minx, miny], [maxx, maxy], size=(300, 2))
    polys = voronoi_tiling(seeds, outline)
    loc = GridLocator([str(i) for i in range(len(polys))], polys)
    ex, ey = edge_points(polys, rng, 2000)
    x = np.concatenate([ex, rng.uniform(minx, maxx, 3000)])
    y = np.concatenate([ey, rng.uniform(miny, maxy, 3000)])
    assert np.array_equal(loc.locate_index_many(x, y), brute_force(polys, x, y))


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        GridLocator(["a"], [])
    with pytest.raises(TypeError):
        GridLocator(["a"], [shapely.LineString([(0, 0), (1, 1)])])


@st.composite
def small_tilings(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    coord = st.integers(min_value=0, max_value=40).map(lambda v: v / 4)  # many collinear/ties
    seeds = draw(st.lists(st.tuples(coord, coord), min_size=n, max_size=n, unique=True))
    if draw(st.booleans()):
        outline = shapely.box(0, 0, 10, 10)
    else:
        outline = irregular_outline(5, 5, 4, 3.5, n=draw(st.integers(5, 20)))
    if len(seeds) == 1:
        polys = [outline]
    else:
        polys = voronoi_tiling(np.array(seeds, dtype=float), outline)
    if draw(st.booleans()) and polys:
        k = draw(st.integers(0, len(polys) - 1))
        c = polys[k].centroid
        polys[k] = polys[k].difference(c.buffer(0.3, quad_segs=2))  # a hole (or a bite)
    if draw(st.booleans()):
        polys.append(shapely.box(3, 3, 6.5, 5.25))  # overlaps others
    polys = draw(st.permutations(polys))
    cpp = draw(st.sampled_from([1, 2, 8, 64, 256]))
    return list(polys), cpp


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=small_tilings(), seed=st.integers(0, 2**32 - 1))
def test_property_random_small_tilings(data, seed):
    polys, cpp = data
    loc = GridLocator([f"g{i}" for i in range(len(polys))], polys, cells_per_polygon=cpp)
    rng = np.random.default_rng(seed)
    grid = np.arange(-1, 11.25, 0.25)
    gx, gy = (a.ravel() for a in np.meshgrid(grid, grid))
    rx, ry = rng.uniform(-1, 11, 500), rng.uniform(-1, 11, 500)
    if polys:
        ex, ey = edge_points(polys, rng, 400)
    else:
        ex = ey = np.zeros(0)
    x = np.concatenate([gx, rx, ex])
    y = np.concatenate([gy, ry, ey])
    want = brute_force(polys, x, y)
    assert np.array_equal(loc.locate_index_many(x, y), want)
    for i in rng.choice(len(x), 20, replace=False):
        assert loc.locate_index(x[i], y[i]) == want[i]
