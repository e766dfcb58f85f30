"""Synthetic demo city 演示城市: a pure, database-free generator of a plausible municipality.

``generate_city(size, seed)`` returns a complete, self-consistent city 市 for demos, seeding
and benchmarks:

* the administrative tree 行政区划 city 市 > district 区 > town 街道/镇 > village 社区/村 with
  12-digit statistical division codes 统计用区划代码 (GB/T 2260 + 3 + 3) under ``3201``;
* the unified grid layer 全科网格 (one code per grid 网格, village code + 3 digits) and two
  other layers that map onto it 多格合一: police beats 警务网格 (``P`` codes) and urban
  management grids 城管网格 (``U`` codes);
* functional departments 职能部门 at city, district and town level;
* ten-household groups 十联户 with a lead household 联户长 per group;
* demo accounts 演示账号 covering every role.

Geography: WGS84 lon/lat degrees around (118.80, 32.05). The irregular city outline
(radial noise, 128 vertices) is split recursively with Voronoi tessellation 泰森多边形
(random seeds, denser towards the core, each cell clipped to its parent; a fragment cut off
by a concave parent joins a neighbour). At every level the new internal edges are densified
and wiggled sideways (never crossing another edge), so borders look drawn rather than
straight while the parent's own boundary stays fixed. Finally the grid tiling is snap-rounded
to 7 decimals (about 1 cm) and every unit is rebuilt as the exact union of its children:
siblings share bit-identical vertices, so there are no gaps, no overlaps, and every child
lies inside its parent. Should a wiggle or the rounding ever break that, the generator
keeps the plain (unwiggled or unrounded) tiling instead.

Other grid layers 其他网格图层 (多格合一, each a union of whole unified grids):

* police beats 警务网格: ``P`` + town code[:9] + 3 digits, one or two adjacent villages;
* urban management grids 城管网格: ``U`` + village code + 2 digits, two halves of a village.

Deterministic: the same ``(size, seed)`` always yields the same codes, names, people and
geometry (``random.Random(seed)``, ``numpy.random.default_rng(seed)`` and a ``Faker('zh_CN')``
seeded with ``seed_instance(seed)``).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import shapely
from faker import Faker
from shapely import LineString, MultiPolygon, Polygon
from shapely.geometry import mapping

__all__ = [
    "CITY_CODE",
    "DEMO_PASSWORD",
    "ROLES",
    "SIZES",
    "DemoCity",
    "DemoDepartment",
    "DemoGrid",
    "DemoHouseholdGroup",
    "DemoUnit",
    "DemoUser",
    "SizeSpec",
    "city_to_geojson",
    "generate_city",
]

CITY_CODE: Final = "320100000000"
"""Code of the demo city 演示城市代码 (a prefecture-level city 地级市 under province 32)."""

CENTER: Final = (118.80, 32.05)
"""Approximate centre of the demo city, WGS84 (lon, lat)."""

GRID_SIZE: Final = 1e-7
"""Coordinate precision of the final geometry, degrees (7 decimals, about 1 cm)."""

_FINE_GRID: Final = 1e-11
"""Snap-rounding precision while splitting; it only merges floating-point noise."""

DEMO_PASSWORD: Final = "Shiyu@2026"
"""Password of every demo account 演示账号密码 (admin included)."""

ROLES: Final = ("grid_worker", "dispatcher", "department_handler", "mediator", "leader", "auditor", "admin")
"""Roles the demo accounts use 角色: 网格员, 调度员, 部门处置人员, 调解员, 领导, 审计员, 管理员."""

_MOBILE: Final = re.compile(r"^1[3-9]\d{9}$")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"

FloatArray = npt.NDArray[np.float64]
Geometry: TypeAlias = Polygon | MultiPolygon


# --------------------------------------------------------------------------- public model


@dataclass(frozen=True)
class DemoUnit:
    """An administrative unit 行政区划单位: city 市, district 区, town 街道/镇 or village 社区/村."""

    code: str
    name: str
    kind: str  # "city" | "district" | "town" | "village"
    parent_code: str | None
    polygon: Polygon | MultiPolygon


@dataclass(frozen=True)
class DemoDepartment:
    """A functional department 职能部门, hanging under the administrative unit it serves."""

    code: str  # parent code + "-" + two-letter abbreviation, e.g. "320102000000-GA"
    name: str
    parent_code: str
    category: str  # public_security 公安, urban_management 城管, market_regulation 市场监管, ...


@dataclass(frozen=True)
class DemoGrid:
    """A grid 网格 of one layer 图层.

    ``layer`` is ``"unified"`` (全科网格, code = village code + 3 digits), ``"police"`` (警务网格,
    a police beat covering one or two adjacent villages; ``village_code`` is the first of them)
    or ``"urban"`` (城管网格, one half of a village).
    """

    code: str
    name: str
    village_code: str
    layer: str
    polygon: Polygon


@dataclass(frozen=True)
class DemoHouseholdGroup:
    """A ten-household group 十联户 inside a unified grid, with its lead household 联户长."""

    code: str  # grid code + "-" + 2 digits
    name: str
    grid_code: str
    lead_name: str
    lead_phone: str
    lead_resident_id: str  # 居民身份证号, 18 characters with a valid check digit
    households: int


@dataclass(frozen=True)
class DemoUser:
    """A demo account 演示账号; ``unit_code`` is the unit or department it is bound to."""

    username: str
    password: str
    role: str
    unit_code: str
    display_name: str
    phone: str


@dataclass
class DemoCity:
    """A generated demo city 演示城市.

    ``units`` lists parents before children (city, districts, towns, villages); ``grids`` is
    the unified layer 全科网格 only; ``layer_grids`` holds the other layers keyed ``"police"``
    and ``"urban"``.
    """

    size: str
    seed: int
    units: list[DemoUnit]
    departments: list[DemoDepartment]
    grids: list[DemoGrid]
    layer_grids: dict[str, list[DemoGrid]]
    households: list[DemoHouseholdGroup]
    users: list[DemoUser]

    def units_of_kind(self, kind: str) -> list[DemoUnit]:
        """Units of one level 层级 ("city", "district", "town" or "village"), in code order."""
        return [u for u in self.units if u.kind == kind]

    def grids_of(self, village_code: str) -> list[DemoGrid]:
        """Unified grids 全科网格 of one village 社区/村."""
        return [g for g in self.grids if g.village_code == village_code]


@dataclass(frozen=True)
class SizeSpec:
    """Shape of a demo city size 规模."""

    districts: int
    towns_per_district: int
    villages_per_town: int
    grids_per_village: tuple[int, int]  # inclusive range
    grid_total: tuple[int, int]  # inclusive range of the unified grid count
    width_deg: float  # extent of the city, longitude degrees
    height_deg: float  # extent of the city, latitude degrees
    households_per_grid: tuple[int, int]  # inclusive range of ten-household groups per grid
    user_towns_per_district: int | None  # towns with dispatcher/leader accounts; None = all


SIZES: Final[dict[str, SizeSpec]] = {
    "small": SizeSpec(3, 3, 4, (3, 6), (140, 160), 0.9, 0.7, (2, 4), None),
    "medium": SizeSpec(6, 10, 10, (4, 6), (2850, 3150), 1.6, 1.2, (1, 1), 3),
}


# --------------------------------------------------------------------------- names

_CITY_NAMES: Final = ("宁川", "锦澜", "泓江", "澄阳", "鹭宁", "云川", "澜江", "清源")
_DISTRICT_FIRST: Final = "玄秦鼓建栖雨江浦溧白紫钟清明临新青云龙凤金松"
_DISTRICT_SECOND: Final = "湖淮楼邺霞台宁口合水阳川山源安平城溪"
_PLACE_FIRST: Final = (
    "梅桂兰竹菊柳杨桃李杏荷莲枫松柏樟槐芦茶稻禾丰福寿康和安乐泰兴隆盛永长万金银玉石沙翠碧红青东西南北中上新"
)
_PLACE_SECOND: Final = "园林桥湾塘岗口埠集店庄营圩坝墩洲渡门坊巷苑港山岭溪泉湖河亭台阁铺寨浜滩坪"

# (category, abbreviation, city-level name, district-level name); {c} city, {d} district, {ds} its stem
_DEPARTMENTS: Final = (
    ("public_security", "GA", "{c}公安局", "{c}公安局{ds}分局"),
    ("urban_management", "CG", "{c}城市管理局", "{d}城市管理局"),
    ("market_regulation", "SC", "{c}市场监督管理局", "{d}市场监督管理局"),
    ("housing", "ZJ", "{c}住房和城乡建设局", "{d}住房和城乡建设局"),
    ("justice", "SF", "{c}司法局", "{d}司法局"),
    ("civil_affairs", "MZ", "{c}民政局", "{d}民政局"),
    ("emergency", "YJ", "{c}应急管理局", "{d}应急管理局"),
    ("environment", "HB", "{c}生态环境局", "{c}生态环境局{ds}分局"),
)
# (category, abbreviation, name); {c} city, {ds} district stem, {d} district, {t} town, {ts} town stem
_TOWN_DEPARTMENTS: Final = (
    ("public_security", "GA", "{c}公安局{ds}分局{ts}派出所"),
    ("urban_management", "CG", "{t}综合行政执法队"),
    ("justice", "SF", "{d}司法局{ts}司法所"),
)


class _Namer:
    """Draws invented two-character place names 地名, unique across the whole city."""

    def __init__(self, rnd: random.Random) -> None:
        self._rnd = rnd
        self._used: set[str] = set()

    def pick(self, first: str, second: str) -> str:
        for _ in range(100_000):
            stem = self._rnd.choice(first) + self._rnd.choice(second)
            if stem[0] != stem[1] and stem not in self._used:
                self._used.add(stem)
                return stem
        raise RuntimeError("ran out of place names")


# --------------------------------------------------------------------------- tessellation


@dataclass
class _Node:
    """Internal tree node: an administrative unit or a unified grid while being built."""

    code: str
    name: str
    stem: str
    kind: str
    parent_code: str | None
    geom: Geometry
    children: list[_Node] = field(default_factory=list)


def _city_outline(spec: SizeSpec, rng: np.random.Generator) -> Polygon:
    """An irregular, star-shaped city outline 城市边界 with radial noise, scaled to the extent."""
    k = 128
    theta = np.linspace(0.0, 2.0 * math.pi, k, endpoint=False)
    radius = np.ones(k)
    for harmonic in range(2, 8):
        amplitude = rng.uniform(0.0, 0.16 / harmonic)
        radius += amplitude * np.cos(harmonic * theta + rng.uniform(0.0, 2.0 * math.pi))
    radius *= 1.0 + rng.normal(0.0, 0.012, k)
    radius = np.clip(radius, 0.55, None)
    x, y = radius * np.cos(theta), radius * np.sin(theta)
    x = (x - (x.max() + x.min()) / 2.0) / (x.max() - x.min()) * spec.width_deg + CENTER[0]
    y = (y - (y.max() + y.min()) / 2.0) / (y.max() - y.min()) * spec.height_deg + CENTER[1]
    outline = Polygon(np.column_stack([x, y]))
    if not outline.is_valid:  # star-shaped with positive radius: cannot happen, keep a guard
        raise RuntimeError("invalid city outline")
    return outline


def _sample_seeds(
    parent: Polygon, n: int, rng: np.random.Generator, focus: tuple[float, float, float]
) -> FloatArray:
    """``n`` random seed points inside ``parent``, spread out and denser near the city core 城区."""
    shapely.prepare(parent)
    minx, miny, maxx, maxy = parent.bounds
    spacing = 0.45 * math.sqrt(parent.area / n)
    fx, fy, fscale = focus
    points: list[tuple[float, float]] = []
    for _ in range(200):
        cand = rng.uniform((minx, miny), (maxx, maxy), size=(32 * n, 2))
        weight = 0.35 + 0.65 * np.exp(-((cand[:, 0] - fx) ** 2 + (cand[:, 1] - fy) ** 2) / fscale**2)
        keep = shapely.contains_xy(parent, cand[:, 0], cand[:, 1]) & (rng.random(len(cand)) < weight)
        for x, y in cand[keep]:
            if all((x - px) ** 2 + (y - py) ** 2 >= spacing**2 for px, py in points):
                points.append((float(x), float(y)))
                if len(points) == n:
                    return np.array(points)
        spacing *= 0.8
    raise RuntimeError("could not place Voronoi seeds")


def _voronoi_cells(parent: Polygon, seeds: FloatArray) -> list[Polygon] | None:
    """Voronoi cells of ``seeds`` clipped to ``parent``; stray fragments join a neighbour.

    A convex cell clipped to a concave parent may fall apart; every fragment that does not
    hold the cell's seed is merged into the edge-adjacent cell it shares most boundary with.
    Returns None when that is impossible (the caller retries with other seeds).
    """
    diagram = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=parent, ordered=True)
    cells = shapely.get_parts(diagram)
    if len(cells) != len(seeds):
        return None
    clipped = shapely.intersection(cells, parent)
    homes: list[Polygon] = []
    strays: list[Polygon] = []
    for (x, y), piece in zip(seeds, clipped, strict=True):
        parts = [p for p in shapely.get_parts(piece) if isinstance(p, Polygon) and not p.is_empty]
        if not parts:
            return None
        home = next((p for p in parts if shapely.contains_xy(p, x, y)), max(parts, key=lambda p: p.area))
        homes.append(home)
        strays.extend(p for p in parts if p is not home)
    for _ in range(4):
        if not strays:
            break
        left: list[Polygon] = []
        for stray in strays:
            best: tuple[float, int, Polygon] | None = None
            for j, home in enumerate(homes):
                if stray.distance(home) > 1e-9:
                    continue
                merged = shapely.union(home, stray)
                if not isinstance(merged, Polygon):
                    continue
                shared = (home.length + stray.length - merged.length) / 2.0
                if best is None or shared > best[0]:
                    best = (shared, j, merged)
            if best is None:
                left.append(stray)
            else:
                homes[best[1]] = best[2]
        strays = left
    return None if strays else homes


def _split(
    parent: Polygon, n: int, rng: np.random.Generator, focus: tuple[float, float, float]
) -> list[Polygon]:
    """Split ``parent`` into ``n`` irregular, single-part, hole-free cells that tile it exactly."""
    if n == 1:
        return [parent]
    mean = parent.area / n
    for attempt in range(40):
        cells = _voronoi_cells(parent, _sample_seeds(parent, n, rng, focus))
        if cells is None:
            continue
        if any(not c.is_valid or len(c.interiors) for c in cells):
            continue
        min_share = 0.2 if attempt < 10 else 0.08 if attempt < 25 else 0.0
        areas = [c.area for c in cells]
        if min(areas) < min_share * mean or abs(sum(areas) - parent.area) > 1e-9 * parent.area:
            continue
        return _rebuild(cells, rng, grid_size=_FINE_GRID, perturb=True) or cells
    raise RuntimeError("could not split a polygon into single-part cells")


def _serpentine(cells: Sequence[Polygon], parent: Geometry) -> list[Polygon]:
    """Cells in serpentine reading order 蛇形顺序 (row by row, north first), so neighbours get
    consecutive codes."""
    band = math.sqrt(parent.area / max(len(cells), 1))
    top = parent.bounds[3]

    def key(cell: Polygon) -> tuple[int, float]:
        c = cell.centroid
        row = int((top - c.y) // band)
        return row, c.x if row % 2 == 0 else -c.x

    return sorted(cells, key=key)


def _merge(geoms: Sequence[Geometry]) -> Geometry:
    """Exact union of tiles that share snapped vertices; a one-part result is a Polygon."""
    merged: object = shapely.union_all(np.asarray(geoms, dtype=object), grid_size=GRID_SIZE)
    if isinstance(merged, MultiPolygon) and len(merged.geoms) == 1:
        merged = merged.geoms[0]
    if not isinstance(merged, Polygon | MultiPolygon):
        raise RuntimeError(f"unexpected union result {type(merged).__name__}")
    return merged


# --------------------------------------------------------------------------- edge refinement


def _wiggle(
    coords: FloatArray, amplitude: float, weights: FloatArray, phases: FloatArray, step: float
) -> LineString:
    """Densify an edge and displace it sideways by smooth noise; the end nodes stay put."""
    seg = np.hypot(np.diff(coords[:, 0]), np.diff(coords[:, 1]))
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    total = float(cum[-1])
    m = int(min(max(math.ceil(total / step), 3), 48))
    s = np.union1d(cum / total, np.linspace(0.0, 1.0, m + 1))
    s = s[np.concatenate(([True], np.diff(s) > 1e-4))]
    s[-1] = 1.0
    x = np.interp(s * total, cum, coords[:, 0])
    y = np.interp(s * total, cum, coords[:, 1])
    dx, dy = coords[-1] - coords[0]
    norm = math.hypot(dx, dy)
    w = weights / np.abs(weights).sum()
    shape = np.sin(math.pi * s) * (
        w[0] + w[1] * np.sin(2.0 * math.pi * s + phases[0]) + w[2] * np.sin(4.0 * math.pi * s + phases[1])
    )
    x = x - amplitude * shape * dy / norm
    y = y + amplitude * shape * dx / norm
    x[0], y[0] = coords[0]
    x[-1], y[-1] = coords[-1]
    return LineString(np.column_stack([x, y]))


def _fits(cand: LineString, i: int, current: list[LineString], tree: shapely.STRtree) -> bool:
    """True when ``cand`` is simple and meets the other edges only at its own end nodes."""
    if not cand.is_simple:
        return False
    near = tree.query(cand)
    near = near[near != i]
    if len(near) == 0:
        return True
    others = np.empty(len(near), dtype=object)
    others[:] = [current[j] for j in near]
    ends = {cand.coords[0], cand.coords[-1]}
    for j in np.flatnonzero(shapely.intersects(cand, others)):
        inter = shapely.intersection(cand, others[j])
        if inter.geom_type not in ("Point", "MultiPoint"):
            return False
        if any(tuple(p) not in ends for p in shapely.get_coordinates(inter).tolist()):
            return False
    return True


def _perturb_edges(
    edges: list[LineString], cells: npt.NDArray[Any], rng: np.random.Generator
) -> list[LineString]:
    """Make the shared edges of a tiling wiggle 边界扰动 without ever crossing another edge.

    Only edges between two cells move; edges on the parent's boundary stay fixed. An edge is
    displaced by at most 8 % of its chord and 30 % of the inscribed radius of the cells beside
    it, so each cell keeps its pole of inaccessibility. Edges move one at a time and are
    checked against the current state of all others, so the network stays planar with the
    same faces.
    """
    n = len(edges)
    if n == 0:
        return edges
    mic = shapely.maximum_inscribed_circle(cells)
    radius = shapely.length(mic)
    arr = np.empty(n, dtype=object)
    arr[:] = edges
    mids = shapely.line_interpolate_point(arr, 0.5, normalized=True)
    edge_idx, cell_idx = shapely.STRtree(cells).query(mids, predicate="dwithin", distance=1e-9)
    sides = np.bincount(edge_idx, minlength=n)
    r_min = np.full(n, np.inf)
    np.minimum.at(r_min, edge_idx, radius[cell_idx])
    r_min[~np.isfinite(r_min)] = 0.0
    coords = [shapely.get_coordinates(e) for e in edges]
    chord = np.array([math.hypot(*(c[-1] - c[0])) for c in coords])
    length = shapely.length(arr)
    step = float(np.median(np.sqrt(shapely.area(cells)))) / 6.0
    amp = np.minimum(0.08 * chord, 0.3 * r_min)
    amp[(sides < 2) | (chord < 0.5 * length) | (length < 0.2 * step)] = 0.0
    weights = rng.uniform(-1.0, 1.0, size=(n, 3))
    phases = rng.uniform(0.0, 2.0 * math.pi, size=(n, 2))
    scale = rng.uniform(0.5, 1.0, size=n)
    a_max = float(amp.max())
    if a_max <= 0.0:
        return edges
    b = shapely.bounds(arr)
    tree = shapely.STRtree(shapely.box(b[:, 0] - a_max, b[:, 1] - a_max, b[:, 2] + a_max, b[:, 3] + a_max))
    current = list(edges)
    for i in range(n):
        if amp[i] <= 0.0:
            continue
        for factor in (1.0, 0.5, 0.25):
            cand = _wiggle(coords[i], float(amp[i] * scale[i] * factor), weights[i], phases[i], step)
            if _fits(cand, i, current, tree):
                current[i] = cand
                break
    return current


def _rebuild(
    cells: list[Polygon], rng: np.random.Generator, *, grid_size: float, perturb: bool
) -> list[Polygon] | None:
    """Rebuild a tiling from its noded (optionally perturbed) edge network.

    The boundaries of all cells are noded and snap-rounded together to ``grid_size``, so two
    neighbours share bit-identical vertices. Each new face is matched to its cell by the
    cell's pole of inaccessibility 不可达极点. Returns None when the faces do not match the
    cells one to one (callers then keep the input tiling).
    """
    arr = np.empty(len(cells), dtype=object)
    arr[:] = cells
    anchors = shapely.get_point(shapely.maximum_inscribed_circle(arr), 0)
    noded = shapely.union_all(shapely.boundary(arr), grid_size=grid_size)
    if perturb:
        edges = [e for e in shapely.get_parts(shapely.line_merge(noded)) if isinstance(e, LineString)]
        edges = _perturb_edges(edges, arr, rng)
        noded = shapely.union_all(np.asarray(edges, dtype=object), grid_size=grid_size)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    if len(faces) != len(cells):
        return None
    anchor_idx, face_idx = shapely.STRtree(faces).query(anchors, predicate="within")
    if len(anchor_idx) != len(cells) or len(set(anchor_idx.tolist())) != len(cells):
        return None
    if len(set(face_idx.tolist())) != len(faces):
        return None
    out: list[Polygon] = list(cells)
    for a, f in zip(anchor_idx.tolist(), face_idx.tolist(), strict=True):
        face = faces[f]
        if not isinstance(face, Polygon) or not face.is_valid or len(face.interiors):
            return None
        out[a] = face
    before, after = sum(c.area for c in cells), sum(c.area for c in out)
    if abs(after - before) > 1e-7 * before:
        return None
    return out


# --------------------------------------------------------------------------- people


def _mobile(fake: Faker) -> str:
    """A mainland mobile number 手机号 from Faker that matches ``^1[3-9]\\d{9}$``."""
    for _ in range(1000):
        phone = str(fake.phone_number())
        if _MOBILE.match(phone):
            return phone
    raise RuntimeError("Faker produced no valid mobile number")


def _resident_id(fake: Faker, area: str) -> str:
    """A resident ID 居民身份证号 from Faker's ``ssn()``, re-homed to ``area`` (6-digit county code)
    with the check digit 校验码 recomputed (ISO 7064 MOD 11-2)."""
    body = area + str(cast(Any, fake).ssn(min_age=25, max_age=75))[6:17]
    total = sum(int(ch) * w for ch, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + _ID_CHECK[total % 11]


# --------------------------------------------------------------------------- generator


def generate_city(size: str = "small", seed: int = 1) -> DemoCity:
    """Generate a demo city 演示城市 of ``size`` ("small" or "medium"), deterministic for ``seed``.

    small: 3 districts, 9 towns, 36 villages, 140-160 unified grids;
    medium: 6 districts, 60 towns, 600 villages, 2,850-3,150 unified grids.
    """
    spec = SIZES.get(size)
    if spec is None:
        raise ValueError(f"unknown demo city size {size!r}; expected one of {', '.join(SIZES)}")
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    namer = _Namer(rnd)

    outline = _city_outline(spec, rng)
    city_stem = rnd.choice(_CITY_NAMES)
    city = _Node(CITY_CODE, f"{city_stem}市", city_stem, "city", None, outline)
    focus = (CENTER[0], CENTER[1], 0.3 * max(spec.width_deg, spec.height_deg))
    reach = math.sqrt(outline.area / math.pi)

    # districts 区: core districts first, as real codes do (02 is the old town)
    cells = _split(outline, spec.districts, rng, focus)
    cells.sort(key=lambda c: math.hypot(c.centroid.x - CENTER[0], c.centroid.y - CENTER[1]))
    for i, cell in enumerate(cells):
        stem = namer.pick(_DISTRICT_FIRST, _DISTRICT_SECOND)
        code = f"{CITY_CODE[:4]}{i + 2:02d}000000"
        city.children.append(_Node(code, f"{stem}区", stem, "district", CITY_CODE, cell))

    # towns 街道 (urban) / 镇 (rural)
    for district in city.children:
        assert isinstance(district.geom, Polygon)
        cells = _serpentine(_split(district.geom, spec.towns_per_district, rng, focus), district.geom)
        for i, cell in enumerate(cells):
            stem = namer.pick(_PLACE_FIRST, _PLACE_SECOND)
            urban = math.hypot(cell.centroid.x - CENTER[0], cell.centroid.y - CENTER[1]) < 0.5 * reach
            code = f"{district.code[:6]}{i + 1:03d}000"
            name = f"{stem}街道" if urban else f"{stem}镇"
            district.children.append(_Node(code, name, stem, "town", district.code, cell))

    # villages: 社区 (communities, codes 001-199) and 村 (villages, codes 201+)
    for district in city.children:
        for town in district.children:
            assert isinstance(town.geom, Polygon)
            cells = _serpentine(_split(town.geom, spec.villages_per_town, rng, focus), town.geom)
            if town.name.endswith("街道"):
                seats = set(range(len(cells)))
            else:  # the town seat 镇区 is urban: the cells nearest the town centre are communities
                tc = town.geom.centroid
                by_dist = sorted(range(len(cells)), key=lambda k: cells[k].centroid.distance(tc))
                seats = set(by_dist[: 1 + len(cells) // 6])
            n_comm = n_vill = 0
            for k, cell in enumerate(cells):
                stem = namer.pick(_PLACE_FIRST, _PLACE_SECOND)
                if k in seats:
                    n_comm += 1
                    code, name = f"{town.code[:9]}{n_comm:03d}", f"{stem}社区"
                else:
                    n_vill += 1
                    code, name = f"{town.code[:9]}{200 + n_vill:03d}", f"{stem}村"
                town.children.append(_Node(code, name, stem, "village", town.code, cell))
            town.children.sort(key=lambda v: v.code)

    villages = [v for d in city.children for t in d.children for v in t.children]
    counts = _grid_counts(len(villages), spec, rnd)

    # unified grids 全科网格
    for village, count in zip(villages, counts, strict=True):
        assert isinstance(village.geom, Polygon)
        cells = _serpentine(_split(village.geom, count, rng, focus), village.geom)
        for k, cell in enumerate(cells, start=1):
            village.children.append(
                _Node(f"{village.code}{k:03d}", f"{village.name}第{k}网格", "", "grid", village.code, cell)
            )

    _finish_geometry(city, villages, rng)

    units = [
        DemoUnit(n.code, n.name, n.kind, n.parent_code, n.geom)
        for n in itertools.chain(
            [city],
            city.children,
            (t for d in city.children for t in d.children),
            villages,
        )
    ]
    grids = [
        DemoGrid(g.code, g.name, v.code, "unified", _as_polygon(g.geom)) for v in villages for g in v.children
    ]
    layer_grids = {"police": _police_beats(city), "urban": _urban_grids(villages)}
    departments = _departments(city)
    households = _households(city, spec, rnd, fake)
    users = _users(city, spec, fake)
    return DemoCity(size, seed, units, departments, grids, layer_grids, households, users)


def _grid_counts(n_villages: int, spec: SizeSpec, rnd: random.Random) -> list[int]:
    """Grids per village within ``spec.grids_per_village``, summing close to the middle of
    ``spec.grid_total``."""
    lo, hi = spec.grids_per_village
    total_lo, total_hi = spec.grid_total
    middle, spread = (total_lo + total_hi) // 2, (total_hi - total_lo) // 6
    target = min(max(rnd.randint(middle - spread, middle + spread), n_villages * lo), n_villages * hi)
    slots = [i for i in range(n_villages) for _ in range(hi - lo)]
    extra = Counter(rnd.sample(slots, target - n_villages * lo))
    return [lo + extra[i] for i in range(n_villages)]


def _finish_geometry(city: _Node, villages: list[_Node], rng: np.random.Generator) -> None:
    """Perturb and snap-round the grid tiling, then rebuild every unit as the union of its
    children; keep the plain Voronoi geometry if that fails."""
    grid_nodes = [g for v in villages for g in v.children]
    plain = [_as_polygon(g.geom) for g in grid_nodes]
    refined = _rebuild(plain, rng, grid_size=GRID_SIZE, perturb=False)
    if refined is None:
        return
    for node, geom in zip(grid_nodes, refined, strict=True):
        node.geom = geom
    for village in villages:
        village.geom = _merge([g.geom for g in village.children])
    for district in city.children:
        for town in district.children:
            town.geom = _merge([v.geom for v in town.children])
        district.geom = _merge([t.geom for t in district.children])
    city.geom = _merge([d.geom for d in city.children])


def _as_polygon(geom: Geometry) -> Polygon:
    if not isinstance(geom, Polygon):
        raise RuntimeError(f"expected a Polygon, got {geom.geom_type}")
    return geom


def _police_beats(city: _Node) -> list[DemoGrid]:
    """Police beats 警务网格: per town, villages paired with their best edge-adjacent neighbour."""
    beats: list[DemoGrid] = []
    for district in city.children:
        for town in district.children:
            taken: set[str] = set()
            k = 0
            for i, first in enumerate(town.children):
                if first.code in taken or not isinstance(first.geom, Polygon):
                    continue
                best: tuple[float, str, Polygon] | None = None
                for other in town.children[i + 1 :]:
                    if other.code in taken or not shapely.intersects(first.geom, other.geom):
                        continue
                    merged = _merge([first.geom, other.geom])
                    if not isinstance(merged, Polygon) or len(merged.interiors):
                        continue
                    shared = (first.geom.length + other.geom.length - merged.length) / 2.0
                    if best is None or shared > best[0]:
                        best = (shared, other.code, merged)
                taken.add(first.code)
                polygon = first.geom
                if best is not None:
                    taken.add(best[1])
                    polygon = best[2]
                k += 1
                beats.append(
                    DemoGrid(
                        f"P{town.code[:9]}{k:03d}",
                        f"{town.stem}派出所第{k}警务区",
                        first.code,
                        "police",
                        polygon,
                    )
                )
    return beats


def _urban_grids(villages: list[_Node]) -> list[DemoGrid]:
    """Urban management grids 城管网格: each village split into two contiguous halves made of
    whole unified grids (the most balanced split with the shortest cut)."""
    out: list[DemoGrid] = []
    for village in villages:
        geoms = [g.geom for g in village.children]
        n = len(geoms)
        best: tuple[float, Polygon, Polygon] | None = None
        for size in sorted(range(1, n // 2 + 1), key=lambda s: n - 2 * s):
            for combo in itertools.combinations(range(n), size):
                if 2 * size == n and 0 not in combo:
                    continue
                a = _merge([geoms[i] for i in combo])
                b = _merge([geoms[i] for i in range(n) if i not in combo])
                if (
                    not (isinstance(a, Polygon) and isinstance(b, Polygon))
                    or len(a.interiors)
                    or len(b.interiors)
                ):
                    continue
                if best is None or a.length + b.length < best[0]:
                    best = (a.length + b.length, a, b)
            if best is not None:
                break
        halves = [best[1], best[2]] if best is not None else [village.geom]
        for k, half in enumerate(halves, start=1):
            if isinstance(half, Polygon):
                out.append(
                    DemoGrid(
                        f"U{village.code}{k:02d}",
                        f"{village.name}城管第{k}责任区",
                        village.code,
                        "urban",
                        half,
                    )
                )
    return out


def _departments(city: _Node) -> list[DemoDepartment]:
    """Functional departments 职能部门 of the city, every district and every town."""
    out: list[DemoDepartment] = []
    c = city.name
    for category, abbr, city_name, _ in _DEPARTMENTS:
        out.append(DemoDepartment(f"{CITY_CODE}-{abbr}", city_name.format(c=c), CITY_CODE, category))
    for district in city.children:
        for category, abbr, _, district_name in _DEPARTMENTS:
            name = district_name.format(c=c, d=district.name, ds=district.stem)
            out.append(DemoDepartment(f"{district.code}-{abbr}", name, district.code, category))
        for town in district.children:
            for category, abbr, town_name in _TOWN_DEPARTMENTS:
                name = town_name.format(c=c, d=district.name, ds=district.stem, t=town.name, ts=town.stem)
                out.append(DemoDepartment(f"{town.code}-{abbr}", name, town.code, category))
    return out


def _households(city: _Node, spec: SizeSpec, rnd: random.Random, fake: Faker) -> list[DemoHouseholdGroup]:
    """Ten-household groups 十联户 with their lead households 联户长."""
    out: list[DemoHouseholdGroup] = []
    lo, hi = spec.households_per_grid
    for district in city.children:
        area = district.code[:6]
        for town in district.children:
            for village in town.children:
                for grid in village.children:
                    for k in range(1, rnd.randint(lo, hi) + 1):
                        out.append(
                            DemoHouseholdGroup(
                                code=f"{grid.code}-{k:02d}",
                                name=f"{grid.name}十联户第{k}组",
                                grid_code=grid.code,
                                lead_name=str(fake.name()),
                                lead_phone=_mobile(fake),
                                lead_resident_id=_resident_id(fake, area),
                                households=rnd.randint(7, 12),
                            )
                        )
    return out


def _users(city: _Node, spec: SizeSpec, fake: Faker) -> list[DemoUser]:
    """Demo accounts 演示账号 for every role, bound to units or departments."""
    out: list[DemoUser] = []

    def add(username: str, role: str, unit_code: str) -> None:
        out.append(DemoUser(username, DEMO_PASSWORD, role, unit_code, str(fake.name()), _mobile(fake)))

    add("admin", "admin", CITY_CODE)
    add("auditor_city", "auditor", CITY_CODE)
    add("leader_city", "leader", CITY_CODE)
    add("dispatcher_city", "dispatcher", CITY_CODE)
    add("mediator_city", "mediator", CITY_CODE)
    add("handler_city_ga", "department_handler", f"{CITY_CODE}-GA")
    add("handler_city_cg", "department_handler", f"{CITY_CODE}-CG")
    for i, district in enumerate(city.children):
        first = i == 0
        add(f"leader_{district.code}", "leader", district.code)
        add(f"dispatcher_{district.code}", "dispatcher", district.code)
        add(f"mediator_{district.code}", "mediator", district.code)
        add(f"handler_{district.code}_ga", "department_handler", f"{district.code}-GA")
        add(f"handler_{district.code}_cg", "department_handler", f"{district.code}-CG")
        if first:
            add(f"auditor_{district.code}", "auditor", district.code)
        limit = spec.user_towns_per_district
        towns = district.children if first or limit is None else district.children[:limit]
        for town in towns:
            add(f"leader_{town.code}", "leader", town.code)
            add(f"dispatcher_{town.code}", "dispatcher", town.code)
            if first:
                add(f"mediator_{town.code}", "mediator", f"{town.code}-SF")
                add(f"handler_{town.code}_ga", "department_handler", f"{town.code}-GA")
                for village in town.children:
                    add(f"grid_{village.code}", "grid_worker", village.code)
    return out


# --------------------------------------------------------------------------- GeoJSON


def city_to_geojson(city: DemoCity, *, include_grids: bool = True) -> dict[str, Any]:
    """The city as a GeoJSON FeatureCollection 要素集合: every unit, then (optionally) every
    unified grid, parents before children. Properties: code, name, kind, parent."""
    features: list[dict[str, Any]] = []
    order = {"city": 0, "district": 1, "town": 2, "village": 3}
    for unit in sorted(city.units, key=lambda u: order[u.kind]):
        features.append(_feature(unit.code, unit.name, unit.kind, unit.parent_code or "", unit.polygon))
    if include_grids:
        for grid in city.grids:
            features.append(_feature(grid.code, grid.name, "grid", grid.village_code, grid.polygon))
    return {"type": "FeatureCollection", "features": features}


def _feature(code: str, name: str, kind: str, parent: str, geom: Geometry) -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name, "kind": kind, "parent": parent},
        "geometry": mapping(geom),
    }
