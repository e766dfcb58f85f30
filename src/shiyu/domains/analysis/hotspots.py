"""Hot-spot analysis 热点分析 with Getis-Ord Gi* (the research standard of "一分析三报告").

``gi_star`` runs Gi* over any polygon layer: queen contiguity weights (polygons sharing
at least one vertex are neighbours, libpysal's ``Queen.from_iterable``), binary weights
with each polygon's self-weight set to 1 (the "star"), and a conditional permutation test
(``esda.getisord.G_Local``). A feature is "hot" when its pseudo p-value ``p_sim`` is at
most ``alpha`` and its z-score is positive, "cold" when ``p_sim <= alpha`` and z is
negative, else "none".

Islands (polygons with no queen neighbour) stay in the computation, so they still count
in the study-area mean and variance and every other feature's result is exactly esda's,
but their own result is reported as ``z = 0, p_sim = p_norm = 1, cls = "none"`` with
``island = True``: a Gi* with only the self-weight restates the feature's own value, and its
permutation test is degenerate (the permuted "neighbourhood" is always the feature itself).

A layer where every value is the same (e.g. no items at all) has no variance: every
feature is reported as ``z = 0, p = 1, "none"`` without running the test.

``grid_hotspots`` counts work items per unified grid 统一网格 of a unit's subtree for one
calendar month (local time, Asia/Shanghai) and runs ``gi_star`` over those grids.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shiyu.domains.geo.models import Grid
from shiyu.domains.geo.rules import UNIFIED_LAYER
from shiyu.domains.items.service import ItemFilter, filtered
from shiyu.kit.errors import Invalid
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.scope import scope
from shiyu.platform.units import service as units
from shiyu.platform.workflow.calendar import LOCAL_TZ

HotspotClass = Literal["hot", "cold", "none"]

#: Fewest features Gi* is run on (with fewer there is no neighbourhood to compare).
MIN_FEATURES = 3
MAX_PERMUTATIONS = 99_999


@dataclass(frozen=True)
class HotspotResult:
    id: str
    value: float
    z: float
    p_sim: float
    p_norm: float
    cls: HotspotClass
    island: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "value": self.value, "z": self.z, "p_sim": self.p_sim, "p_norm": self.p_norm,
                "class": self.cls, "island": self.island}


def classify(z: float, p_sim: float, alpha: float) -> HotspotClass:
    if p_sim <= alpha and z > 0:
        return "hot"
    if p_sim <= alpha and z < 0:
        return "cold"
    return "none"


def queen_weights(geoms: Sequence[BaseGeometry]) -> Any:
    """Binary queen contiguity weights over ``geoms``, ids 0..n-1 in input order."""
    from libpysal.weights import Queen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not fully connected" / islands: handled by the caller
        w = Queen.from_iterable(list(geoms))
    w.transform = "B"
    return w


def gi_star(
    gdf_or_geoms: Sequence[BaseGeometry],
    values: Sequence[float],
    ids: Sequence[str],
    *,
    permutations: int = 999,
    seed: int | None = 12345,
    alpha: float = 0.05,
) -> list[HotspotResult]:
    """Getis-Ord Gi* per polygon, in input order. See the module docstring for the method."""
    from esda.getisord import G_Local

    geoms = _geometries(gdf_or_geoms)
    n = len(geoms)
    if len(values) != n or len(ids) != n:
        raise Invalid(f"geometries ({n}), values ({len(values)}) and ids ({len(ids)}) differ in length",
                      code="hotspot_lengths")
    if n < MIN_FEATURES:
        raise Invalid(f"Gi* needs at least {MIN_FEATURES} features, got {n}", code="hotspot_too_few")
    if not 1 <= permutations <= MAX_PERMUTATIONS:
        raise Invalid(f"permutations must be between 1 and {MAX_PERMUTATIONS}", code="hotspot_permutations",
                      field="permutations")
    if not 0 < alpha < 1:
        raise Invalid("alpha must be between 0 and 1", code="hotspot_alpha", field="alpha")
    for i, g in enumerate(geoms):
        if g is None or g.is_empty or g.geom_type not in ("Polygon", "MultiPolygon"):
            raise Invalid(f"feature {i} is not a polygon", code="hotspot_geometry", params={"index": i})
    y = np.asarray(values, dtype=float)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise Invalid(f"value of feature {int(bad[0])} is not a finite number", code="hotspot_value",
                      params={"index": int(bad[0])})
    ids = [str(i) for i in ids]

    w = queen_weights(geoms)
    islands = {int(i) for i in w.islands}
    if np.all(y == y[0]):
        return [HotspotResult(ids[i], float(y[i]), 0.0, 1.0, 1.0, "none", i in islands) for i in range(n)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = G_Local(y, w, transform="B", permutations=permutations, star=True, seed=seed, n_jobs=1,
                    keep_simulations=False)
    out = []
    for i in range(n):
        if i in islands:
            out.append(HotspotResult(ids[i], float(y[i]), 0.0, 1.0, 1.0, "none", True))
            continue
        z, p_sim, p_norm = float(g.Zs[i]), float(g.p_sim[i]), float(g.p_norm[i])
        if not math.isfinite(z):  # cannot happen with variance > 0; be safe for JSON
            z, p_sim, p_norm = 0.0, 1.0, 1.0
        out.append(HotspotResult(ids[i], float(y[i]), z, p_sim, p_norm, classify(z, p_sim, alpha)))
    return out


def _geometries(gdf_or_geoms: Any) -> list[BaseGeometry]:
    """Shapely geometries from a sequence of them, or from a GeoDataFrame/GeoSeries (duck-typed)."""
    geometry = getattr(gdf_or_geoms, "geometry", None)
    if geometry is not None and not isinstance(gdf_or_geoms, BaseGeometry):
        return list(geometry)
    return list(gdf_or_geoms)


_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def month_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a "YYYY-MM" month in local time (Asia/Shanghai), as aware datetimes."""
    m = _PERIOD.match(period or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise Invalid("period must be YYYY-MM, e.g. 2026-11", code="hotspot_period", field="period")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=LOCAL_TZ)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=LOCAL_TZ)
    return start, end


def grid_hotspots(
    session: Session,
    principal: Principal,
    *,
    unit_code: str,
    period: str,
    category: str | None = None,
    permutations: int = 999,
    seed: int | None = 12345,
    alpha: float = 0.05,
) -> list[HotspotResult]:
    """Gi* of the number of work items per unified grid inside ``unit_code``'s subtree for
    the month ``period`` ("YYYY-MM"); grids without items count 0. Items are those the
    principal may read (``items.service.filtered``); grids are those in the principal's
    read scope. Results are ordered by grid code."""
    since, until = month_bounds(period)
    stmt = filtered(session, principal, ItemFilter(unit=unit_code, category=category, since=since, until=until))
    sub = stmt.subquery()
    counts = dict(session.execute(
        select(sub.c.grid_code, func.count()).where(sub.c.grid_code.is_not(None)).group_by(sub.c.grid_code)
    ).tuples().all())
    unit = units.get(session, unit_code)
    assert unit is not None  # filtered() raised Invalid otherwise
    return counts_hotspots(session, principal, unit_path=unit.path, counts=counts, action="item.read",
                           permutations=permutations, seed=seed, alpha=alpha)


def unit_grids(session: Session, principal: Principal, *, unit_path: str, action: str) -> dict[str, BaseGeometry]:
    """The unified grids 统一网格 under ``unit_path`` that ``principal`` may read for
    ``action``, by code (ordered by code)."""
    grid_stmt = (select(Grid.code, Grid.geom)
                 .where(Grid.layer_code == UNIFIED_LAYER, Grid.scope_path.startswith(unit_path, autoescape=True))
                 .order_by(Grid.code))
    rows = session.execute(scope(grid_stmt, principal, action, Grid.scope_path)).tuples().all()
    geoms = shapely.from_wkb([bytes(g) for _, g in rows]) if rows else []
    return {c: g for (c, _), g in zip(rows, geoms, strict=True)}


def counts_hotspots(session: Session, principal: Principal, *, unit_path: str, counts: dict[str, int | float],
                    action: str, permutations: int = 999, seed: int | None = 12345, alpha: float = 0.05,
                    grids: dict[str, BaseGeometry] | None = None) -> list[HotspotResult]:
    """Gi* of ``counts`` (grid code -> count; grids missing count 0) over the unified
    grids under ``unit_path``."""
    shapes = grids if grids is not None else unit_grids(session, principal, unit_path=unit_path, action=action)
    if len(shapes) < MIN_FEATURES:
        raise Invalid(f"the unit has {len(shapes)} unified grids; Gi* needs at least {MIN_FEATURES}",
                      code="hotspot_too_few", field="unit")
    codes = list(shapes)
    values = [float(counts.get(c, 0)) for c in codes]
    return gi_star([shapes[c] for c in codes], values, codes, permutations=permutations, seed=seed, alpha=alpha)


def layer_from_geojson(data: Any, value_field: str, id_field: str = "code"
                       ) -> tuple[list[BaseGeometry], list[float], list[str]]:
    """Polygons, values and ids of a GeoJSON FeatureCollection, or ``Invalid`` naming the
    first bad feature (0-based). A feature without ``id_field`` is identified by its
    GeoJSON ``id`` or, failing that, its index."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(
            data.get("features"), list):
        raise Invalid("the file is not a GeoJSON FeatureCollection", code="hotspot_not_fc")
    geoms: list[BaseGeometry] = []
    values: list[float] = []
    ids: list[str] = []
    for i, feat in enumerate(data["features"]):
        if not isinstance(feat, dict):
            raise Invalid(f"feature {i} is not an object", code="hotspot_feature", params={"index": i})
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise Invalid(f"feature {i}: properties is not an object", code="hotspot_feature", params={"index": i})
        if value_field not in props or props[value_field] is None:
            raise Invalid(f"feature {i}: field {value_field!r} is missing", code="hotspot_value",
                          field=value_field, params={"index": i})
        raw = props[value_field]
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
        except (TypeError, ValueError):
            raise Invalid(f"feature {i}: field {value_field!r} is not numeric ({raw!r})", code="hotspot_value",
                          field=value_field, params={"index": i}) from None
        if not math.isfinite(value):
            raise Invalid(f"feature {i}: field {value_field!r} is not a finite number", code="hotspot_value",
                          field=value_field, params={"index": i})
        try:
            geom = shapely.geometry.shape(feat.get("geometry"))
        except Exception:  # shapely raises several types for malformed GeoJSON
            raise Invalid(f"feature {i}: geometry is missing or invalid", code="hotspot_geometry",
                          params={"index": i}) from None
        if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise Invalid(f"feature {i}: geometry is not a polygon ({geom.geom_type})", code="hotspot_geometry",
                          params={"index": i})
        fid = props.get(id_field, feat.get("id", i))
        geoms.append(geom)
        values.append(value)
        ids.append(str(fid))
    if len(geoms) < MIN_FEATURES:
        raise Invalid(f"Gi* needs at least {MIN_FEATURES} features, the file has {len(geoms)}",
                      code="hotspot_too_few")
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise Invalid(f"id {dup!r} (field {id_field!r}) occurs more than once", code="hotspot_duplicate_id",
                      field=id_field)
    return geoms, values, ids
