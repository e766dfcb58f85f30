"""Geography use cases 地理: GeoJSON import, point location, scoped reads, reveal.

The unified layer 统一网格 tiles every village; other layers (police beats, urban
management grids, ...) are mapped onto it (多格合一), so a point located once is
known in every layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shiyu.domains.geo import repository as repo
from shiyu.domains.geo.locator import GridLocator
from shiyu.domains.geo.models import GeoRevision, Grid, GridLayer, GridLink, HouseholdGroup, UnitBoundary
from shiyu.domains.geo.rules import (
    DEFAULT_LAYERS,
    FEATURE_KINDS,
    GRID_CODE_RE,
    OUTSIDE_TOLERANCE,
    OVERLAP_TOLERANCE,
    UNIFIED_LAYER,
    outside_share,
    parse_geometry,
)
from shiyu.domains.geo.schemas import (
    GridDetail,
    GridPage,
    GridRead,
    HouseholdGroupRead,
    ImportReport,
    LocateResult,
    UnitRead,
)
from shiyu.kit.db import fetch, per_database
from shiyu.kit.errors import Invalid, NotFound
from shiyu.kit.pii import mask_name, mask_phone, mask_resident_id
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action, check_filter, check_scope, denied
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit
from shiyu.platform.units.rules import LEVEL, check_unit_code, child_path

# --------------------------------------------------------------------------- revision


_REVISION = select(GeoRevision.revision).where(GeoRevision.id == 1)


def revision(session: Session) -> int:
    """The geography revision, read once per transaction (a batch of new items locates
    hundreds of points in one)."""
    tx = session.get_transaction()
    memo = session.info.get("geo.revision")
    if tx is not None and memo is not None and memo[0] is tx:
        return int(memo[1])
    rows = fetch(session, _REVISION)
    rev = (rows[0][0] if rows else 0) or 0
    if tx is not None:
        session.info["geo.revision"] = (tx, rev)
    return rev


def bump_revision(session: Session) -> None:
    session.info.pop("geo.revision", None)
    row = session.get(GeoRevision, 1)
    if row is None:
        session.add(GeoRevision(id=1, revision=1))
    else:
        row.revision += 1
    session.flush()


def ensure_layers(session: Session) -> None:
    existing = set(session.execute(select(GridLayer.code)).scalars())
    for code, name in DEFAULT_LAYERS.items():
        if code not in existing:
            session.add(GridLayer(code=code, name=name, is_unified=code == UNIFIED_LAYER))
    session.flush()


# --------------------------------------------------------------------------- import

Progress = Callable[[int], None]


@dataclass
class _Feature:
    index: int
    code: str
    name: str
    kind: str
    parent: str | None
    geom: BaseGeometry | None
    category: str | None


def _parse_features(data: Any) -> tuple[list[_Feature], list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        return [], [{"index": None, "field": "type", "reason": "not a GeoJSON FeatureCollection"}]
    raw = data.get("features")
    if not isinstance(raw, list):
        return [], [{"index": None, "field": "features", "reason": "features must be a list"}]
    out: list[_Feature] = []
    seen: dict[str, int] = {}
    for i, feat in enumerate(raw):
        def err(field: str, reason: str, i: int = i) -> None:
            errors.append({"index": i, "field": field, "reason": reason})

        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            err("type", "not a GeoJSON Feature")
            continue
        props = feat.get("properties")
        if not isinstance(props, dict):
            err("properties", "properties must be an object")
            continue
        code, name, kind, parent = (props.get(k) for k in ("code", "name", "kind", "parent"))
        bad = False
        if not isinstance(code, str) or not code.strip():
            err("properties.code", "code is required")
            bad = True
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            err("properties.name", "name is required (at most 100 characters)")
            bad = True
        if kind not in FEATURE_KINDS:
            err("properties.kind", f"kind must be one of {', '.join(FEATURE_KINDS)}")
            bad = True
        if parent is not None and not isinstance(parent, str):
            err("properties.parent", "parent must be a code string")
            bad = True
        geom, reason = parse_geometry(feat.get("geometry"))
        if reason:
            err("geometry", reason)
            bad = True
        elif kind == "grid" and geom is None:
            err("geometry", "a grid needs a polygon geometry")
            bad = True
        if bad:
            continue
        assert isinstance(code, str) and isinstance(name, str) and isinstance(kind, str)
        code = code.strip()
        if code in seen:
            err("properties.code", f"code {code} appears twice (also feature {seen[code]})")
            continue
        seen[code] = i
        category = props.get("category") if isinstance(props.get("category"), str) else None
        out.append(_Feature(i, code, name.strip(), kind, (parent or "").strip() or None, geom, category))
    return out, errors


def import_geojson(
    session: Session,
    principal: Principal,
    data: Any,
    *,
    layer: str = UNIFIED_LAYER,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a GeoJSON FeatureCollection of units and grids, all or nothing.

    Each feature: properties ``code``, ``name``, ``kind`` (city|district|town|village|grid,
    or department), ``parent`` (the parent's code; empty for the city). Re-importing the
    same file changes nothing. Any bad feature raises ``Invalid`` listing every problem
    with its feature index, and nothing is written.
    """
    check_action(session, principal, "geo.write", object_type="geo")
    ensure_layers(session)
    if session.execute(select(GridLayer.id).where(GridLayer.code == layer)).first() is None:
        raise Invalid("unknown layer", code="unknown_layer", field="layer", params={"layer": layer})
    feats, errors = _parse_features(data)
    if errors:
        raise Invalid("bad features", code="bad_features", field="features", errors=errors)

    unit_feats = sorted((f for f in feats if f.kind != "grid"), key=lambda f: (LEVEL.get(f.kind, 5), f.index))
    grid_feats = [f for f in feats if f.kind == "grid"]
    existing_units = units.get_many(session, [f.code for f in feats] + [f.parent for f in feats if f.parent])
    # Resolve parents and paths in memory; every check happens before any write.
    resolved: dict[str, tuple[str, int, str | None, str]] = {
        u.code: (u.kind, u.level, u.parent_code, u.path) for u in existing_units.values()
    }
    grid_codes_in_db = {
        g.code: g for g in session.execute(select(Grid).where(Grid.code.in_([f.code for f in feats]))).scalars()
    }
    for f in unit_feats:
        parent = resolved.get(f.parent) if f.parent else None
        if f.parent and parent is None:
            errors.append({"index": f.index, "field": "properties.parent", "reason": f"unknown parent {f.parent}"})
            continue
        reason = check_unit_code(f.code, f.kind, f.parent, parent[0] if parent else None)
        if reason:
            errors.append({"index": f.index, "field": "properties.code", "reason": reason})
            continue
        if f.code in grid_codes_in_db:
            errors.append({"index": f.index, "field": "properties.code", "reason": "code belongs to a grid"})
            continue
        old = existing_units.get(f.code)
        if old is not None and (old.kind != f.kind or old.parent_code != f.parent):
            errors.append({"index": f.index, "field": "properties.parent",
                           "reason": "moving a unit or changing its kind is not supported by import"})
            continue
        if not check_in_import_scope(principal, parent[3] if parent else "/"):
            errors.append({"index": f.index, "field": "properties.parent", "reason": "outside your jurisdiction"})
            continue
        level = LEVEL.get(f.kind, parent[1] if parent else 1)
        resolved[f.code] = (f.kind, level, f.parent, child_path(parent[3] if parent else None, f.code))

    boundaries = _boundaries(session, [f for f in grid_feats if f.parent], unit_feats)
    for f in grid_feats:
        parent = resolved.get(f.parent or "")
        if parent is None:
            errors.append({"index": f.index, "field": "properties.parent", "reason": f"unknown parent {f.parent}"})
            continue
        if not GRID_CODE_RE.match(f.code):
            errors.append({"index": f.index, "field": "properties.code",
                           "reason": "grid code must be 4-32 upper-case letters, digits or '-'"})
            continue
        if f.code in resolved:
            errors.append({"index": f.index, "field": "properties.code", "reason": "code belongs to a unit"})
            continue
        if layer == UNIFIED_LAYER and parent[0] != "village":
            errors.append({"index": f.index, "field": "properties.parent",
                           "reason": "a unified-layer grid must lie in a village/community"})
            continue
        if parent[0] == "department":
            errors.append({"index": f.index, "field": "properties.parent",
                           "reason": "a grid cannot belong to a department"})
            continue
        old_grid = grid_codes_in_db.get(f.code)
        if old_grid is not None and old_grid.layer_code != layer:
            errors.append({"index": f.index, "field": "properties.code", "reason": "grid exists in another layer"})
            continue
        if not check_in_import_scope(principal, parent[3]):
            errors.append({"index": f.index, "field": "properties.parent", "reason": "outside your jurisdiction"})
            continue
        outer = boundaries.get(f.parent or "")
        assert f.geom is not None
        if layer == UNIFIED_LAYER and outer is not None and outside_share(f.geom, outer) > OUTSIDE_TOLERANCE:
            errors.append({"index": f.index, "field": "geometry", "reason": f"grid extends outside {f.parent}"})
    if not errors and layer == UNIFIED_LAYER:
        errors.extend(_overlaps(session, grid_feats))
    if errors:
        raise Invalid("bad features", code="bad_features", field="features", errors=errors)

    created = updated = unchanged = grids_created = 0
    done = 0
    for f in unit_feats:
        kind, level, parent_code, path = resolved[f.code]
        old = existing_units.get(f.code)
        attributes_unchanged = False
        if old is None:
            session.add(Unit(code=f.code, name=f.name, kind=f.kind, level=level, parent_code=parent_code,
                             path=path, category=f.category))
            audit.record(session, principal, "unit.create", object_type="unit", object_id=f.code,
                         scope_path=path, detail={"name": f.name, "kind": f.kind})
            created += 1
        elif old.name != f.name or (f.category and old.category != f.category):
            audit.record(session, principal, "unit.update", object_type="unit", object_id=f.code,
                         scope_path=path, detail={"name": [old.name, f.name]})
            old.name = f.name
            if f.category:
                old.category = f.category
            updated += 1
        else:
            unchanged += 1
            attributes_unchanged = True
        if f.geom is not None:
            c, u = _upsert_boundary(session, f.code, f.geom)
            if c or u:
                audit.record(session, principal, "unit.boundary", object_type="unit", object_id=f.code,
                             scope_path=path)
                # A boundary-only change turns an unchanged unit into an updated one; a unit
                # already counted as created or updated stays counted once.
                if attributes_unchanged:
                    unchanged -= 1
                    updated += 1
        done += 1
        if progress and done % 100 == 0:
            progress(100)
    session.flush()
    changed_grids = False
    for f in grid_feats:
        assert f.geom is not None and f.parent
        path = resolved[f.parent][3]
        wkb = shapely.to_wkb(f.geom)
        minx, miny, maxx, maxy = f.geom.bounds
        old_grid = grid_codes_in_db.get(f.code)
        if old_grid is None:
            session.add(Grid(code=f.code, name=f.name, layer_code=layer, unit_code=f.parent, scope_path=path,
                             geom=wkb, min_lon=minx, min_lat=miny, max_lon=maxx, max_lat=maxy))
            audit.record(session, principal, "grid.create", object_type="grid", object_id=f.code,
                         scope_path=path, detail={"name": f.name, "layer": layer})
            created += 1
            grids_created += 1
            changed_grids = True
        elif (old_grid.name, old_grid.unit_code, bytes(old_grid.geom)) != (f.name, f.parent, wkb):
            if old_grid.unit_code != f.parent and not check_in_import_scope(principal, old_grid.scope_path):
                raise Invalid("bad features", code="bad_features", field="features",
                              errors=[{"index": f.index, "field": "properties.parent",
                                       "reason": "outside your jurisdiction"}])
            audit.record(session, principal, "grid.update", object_type="grid", object_id=f.code,
                         scope_path=path, detail={"name": f.name, "parent": f.parent})
            old_grid.name, old_grid.unit_code, old_grid.scope_path, old_grid.geom = f.name, f.parent, path, wkb
            old_grid.min_lon, old_grid.min_lat, old_grid.max_lon, old_grid.max_lat = minx, miny, maxx, maxy
            updated += 1
            changed_grids = True
        else:
            unchanged += 1
        done += 1
        if progress and done % 100 == 0:
            progress(100)
    session.flush()
    if created or updated:
        bump_revision(session)
    if changed_grids:
        if layer == UNIFIED_LAYER:
            for other in session.execute(select(GridLayer.code).where(GridLayer.is_unified.is_(False))).scalars():
                link_layer(session, other)
        else:
            link_layer(session, layer)
    if progress:
        progress(done % 100)
    return ImportReport(created=created, updated=updated, unchanged=unchanged, features=len(feats),
                        grids_created=grids_created)


def check_in_import_scope(principal: Principal, path: str) -> bool:
    return principal.can_at("geo.write", path)


def _boundaries(session: Session, grid_feats: list[_Feature], unit_feats: list[_Feature]) -> dict[str, BaseGeometry]:
    out: dict[str, BaseGeometry] = {f.code: f.geom for f in unit_feats if f.geom is not None}
    wanted = {f.parent for f in grid_feats if f.parent and f.parent not in out}
    if wanted:
        for code, wkb in session.execute(
            select(UnitBoundary.unit_code, UnitBoundary.geom).where(UnitBoundary.unit_code.in_(wanted))
        ):
            out[code] = shapely.from_wkb(wkb)
    return out


def _overlaps(session: Session, grid_feats: list[_Feature]) -> list[dict[str, Any]]:
    """Unified-layer grids must not overlap one another (new against new and existing)."""
    if not grid_feats:
        return []
    new_codes = {f.code for f in grid_feats}
    codes = [f.code for f in grid_feats]
    geoms: list[BaseGeometry] = [f.geom for f in grid_feats if f.geom is not None]
    index_of = {f.code: f.index for f in grid_feats}
    minx = min(g.bounds[0] for g in geoms)
    miny = min(g.bounds[1] for g in geoms)
    maxx = max(g.bounds[2] for g in geoms)
    maxy = max(g.bounds[3] for g in geoms)
    rows = session.execute(
        select(Grid.code, Grid.geom).where(
            Grid.layer_code == UNIFIED_LAYER, Grid.max_lon >= minx, Grid.min_lon <= maxx,
            Grid.max_lat >= miny, Grid.min_lat <= maxy,
        )
    ).all()
    for code, wkb in rows:
        if code not in new_codes:
            codes.append(code)
            geoms.append(shapely.from_wkb(wkb))
    arr = geoms
    tree = shapely.STRtree(arr)
    left, right = tree.query(arr, predicate="intersects")
    errors = []
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j or (i >= len(grid_feats) and j >= len(grid_feats)):
            continue
        area = shapely.intersection(arr[i], arr[j]).area
        if area > OVERLAP_TOLERANCE:
            a, b = codes[i], codes[j]
            first = a if a in index_of else b
            errors.append({"index": index_of[first], "field": "geometry",
                           "reason": f"grid {a} overlaps grid {b}"})
    return errors


def _upsert_boundary(session: Session, code: str, geom: BaseGeometry) -> tuple[bool, bool]:
    wkb = shapely.to_wkb(geom)
    row = session.get(UnitBoundary, code)
    if row is None:
        session.add(UnitBoundary(unit_code=code, geom=wkb))
        return True, False
    if bytes(row.geom) != wkb:
        row.geom = wkb
        return False, True
    return False, False


def link_layer(session: Session, layer: str) -> int:
    """多格合一: map every grid of ``layer`` onto the unified grids it overlaps."""
    grids = session.execute(select(Grid.code, Grid.geom).where(Grid.layer_code == layer)).all()
    session.execute(delete(GridLink).where(GridLink.grid_code.in_(select(Grid.code).where(Grid.layer_code == layer))))
    if not grids:
        return 0
    unified = session.execute(select(Grid.code, Grid.geom).where(Grid.layer_code == UNIFIED_LAYER)).all()
    if not unified:
        return 0
    ugeoms = shapely.from_wkb([bytes(g) for _, g in unified])
    tree = shapely.STRtree(ugeoms)
    ogeoms = shapely.from_wkb([bytes(g) for _, g in grids])
    left, right = tree.query(ogeoms, predicate="intersects")
    n = 0
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        ua = ugeoms[j].area
        share = shapely.intersection(ogeoms[i], ugeoms[j]).area / ua if ua else 0.0
        if share > 0.01:
            session.add(GridLink(grid_code=grids[i][0], unified_code=unified[j][0], share=round(share, 6)))
            n += 1
    session.flush()
    return n


# --------------------------------------------------------------------------- location

@dataclass(frozen=True)
class _LayerIndex:
    revision: int
    locator: GridLocator
    meta: tuple[tuple[str, str, str], ...]  # (name, unit_code, scope_path) per grid index


_cache_lock = threading.Lock()


def layer_index(session: Session, layer: str = UNIFIED_LAYER, rev: int | None = None) -> _LayerIndex:
    """The spatial index of a layer, built once per geography revision and reused."""
    rev = revision(session) if rev is None else rev
    per_db: dict[str, _LayerIndex] = per_database(session).setdefault("geo.layers", {})
    idx = per_db.get(layer)
    if idx is not None and idx.revision == rev:
        return idx
    with _cache_lock:
        idx = per_db.get(layer)
        if idx is not None and idx.revision == rev:
            return idx
        rows = session.execute(
            select(Grid.code, Grid.name, Grid.unit_code, Grid.scope_path, Grid.geom)
            .where(Grid.layer_code == layer).order_by(Grid.code)
        ).all()
        polys = shapely.from_wkb([bytes(r.geom) for r in rows]) if rows else []
        idx = _LayerIndex(rev, GridLocator([r.code for r in rows], list(polys)),
                          tuple((r.name, r.unit_code, r.scope_path) for r in rows))
        per_db[layer] = idx
        return idx


def locate_point(session: Session, lon: float, lat: float) -> tuple[LocateResult, str] | None:
    """Unscoped location: (result, scope path of the grid) or None when in no grid."""
    rev = revision(session)  # read once: every layer index below is checked against it
    idx = layer_index(session, rev=rev)
    i = int(idx.locator.locate_index_many(_arr(lon), _arr(lat))[0])
    if i < 0:
        return None
    name, _unit, path = idx.meta[i]
    chain = list(reversed([c for c in path.split("/") if c]))
    layers: dict[str, str] = {}
    for other in _other_layers(session, rev):
        oidx = layer_index(session, other, rev=rev)
        if len(oidx.locator):
            j = int(oidx.locator.locate_index_many(_arr(lon), _arr(lat))[0])
            if j >= 0:
                layers[other] = oidx.locator.codes[j]
    return LocateResult(grid=idx.locator.codes[i], grid_name=name, chain=chain, layers=layers), path


def grids_at(session: Session, lons: Sequence[float], lats: Sequence[float]) -> list[tuple[str, str] | None]:
    """Unified grid 全科网格 of many points at once, unscoped: ``(grid code, code of the
    grid's unit)`` or None where a point lies in no grid. No other layers (intake needs
    only this; ``locate_point`` gives the full result of one point)."""
    import numpy as np

    idx = layer_index(session, rev=revision(session))
    found = idx.locator.locate_index_many(np.asarray(lons, dtype="float64"), np.asarray(lats, dtype="float64"))
    out: list[tuple[str, str] | None] = []
    for i in found.tolist():
        if i < 0:
            out.append(None)
        else:
            path = idx.meta[i][2]
            out.append((idx.locator.codes[i], path.rstrip("/").rsplit("/", 1)[-1]))
    return out


def _other_layers(session: Session, rev: int) -> tuple[str, ...]:
    """Codes of the non-unified layers, cached per database and geography revision."""
    cache = per_database(session)
    hit = cache.get("geo.other_layers")
    if hit is not None and hit[0] == rev:
        return hit[1]  # type: ignore[no-any-return]
    codes = tuple(session.execute(select(GridLayer.code).where(GridLayer.is_unified.is_(False))
                                  .order_by(GridLayer.code)).scalars())
    cache["geo.other_layers"] = (rev, codes)
    return codes


def _arr(v: float) -> Any:
    import numpy as np

    return np.asarray([v], dtype="float64")


def locate(session: Session, principal: Principal, lon: float, lat: float) -> LocateResult:
    """Scoped location: a grid outside the principal's jurisdiction is reported as no grid."""
    check_action(session, principal, "grid.read", object_type="grid")
    found = locate_point(session, lon, lat)
    if found is None:
        raise NotFound("no grid at this point", code="no_grid_here", params={"lon": lon, "lat": lat})
    result, path = found
    check_scope(session, principal, "grid.read", path, object_type="grid", object_id=result.grid)
    return result


# --------------------------------------------------------------------------- reads

def get_unit(session: Session, principal: Principal, code: str) -> Unit:
    check_action(session, principal, "unit.read", object_type="unit")
    unit = session.execute(repo.readable_units(principal).where(Unit.code == code)).scalar_one_or_none()
    if unit is None:
        other = units.get(session, code)
        if other is not None:
            denied(session, principal, "unit.read", object_type="unit", object_id=code, scope_path=other.path)
        raise NotFound("unit not found", params={"what": "unit", "id": code})
    return unit


def unit_read(unit: Unit) -> UnitRead:
    return UnitRead.model_validate(unit)


def unit_children(session: Session, principal: Principal, code: str) -> list[UnitRead]:
    parent = get_unit(session, principal, code)
    rows = session.execute(
        repo.readable_units(principal).where(Unit.parent_code == parent.code).order_by(Unit.kind != "department",
                                                                                       Unit.code)
    ).scalars()
    return [unit_read(u) for u in rows]


def _grid_read(g: Grid, with_geometry: bool) -> dict[str, Any]:
    return {
        "code": g.code, "name": g.name, "layer": g.layer_code, "unit_code": g.unit_code,
        "bbox": (g.min_lon, g.min_lat, g.max_lon, g.max_lat),
        "geometry": mapping(shapely.from_wkb(bytes(g.geom))) if with_geometry else None,
    }


def list_grids(
    session: Session,
    principal: Principal,
    *,
    unit: str | None,
    layer: str | None = UNIFIED_LAYER,
    with_geometry: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> GridPage:
    """Grids inside ``unit``'s subtree (or the whole jurisdiction), scoped: a unit outside
    the jurisdiction gives an empty page, and the attempt is audited as a denial."""
    check_action(session, principal, "grid.read", object_type="grid")
    stmt = repo.readable_grids(principal)
    if layer:
        stmt = stmt.where(Grid.layer_code == layer)
    if unit:
        target = units.get(session, unit)
        if target is None:
            raise Invalid("unknown unit", code="unknown_unit", field="unit", params={"code": unit})
        check_filter(session, principal, "grid.read", target.path, object_type="unit", object_id=unit)
        stmt = stmt.where(Grid.scope_path.startswith(target.path, autoescape=True))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(stmt.order_by(Grid.code).limit(limit).offset(offset)).scalars()
    return GridPage(items=[GridRead(**_grid_read(g, with_geometry)) for g in rows], total=total,
                    limit=limit, offset=offset)


def _household_read(h: HouseholdGroup, reveal: bool = False) -> HouseholdGroupRead:
    return HouseholdGroupRead(
        code=h.code, name=h.name, grid_code=h.grid_code,
        lead_name=h.lead_name if reveal else mask_name(h.lead_name),
        lead_phone=(h.lead_phone if reveal else mask_phone(h.lead_phone)) if h.lead_phone else None,
        lead_resident_id=(h.lead_resident_id if reveal else mask_resident_id(h.lead_resident_id))
        if h.lead_resident_id else None,
        households=h.households, masked=not reveal,
    )


def get_grid(session: Session, principal: Principal, code: str) -> GridDetail:
    check_action(session, principal, "grid.read", object_type="grid")
    grid = session.execute(repo.readable_grids(principal).where(Grid.code == code)).scalar_one_or_none()
    if grid is None:
        other = session.execute(select(Grid.scope_path).where(Grid.code == code)).scalar_one_or_none()
        if other is not None:
            denied(session, principal, "grid.read", object_type="grid", object_id=code, scope_path=other)
        raise NotFound("grid not found", params={"what": "grid", "id": code})
    groups: list[HouseholdGroupRead] = []
    if principal.can("household.read"):
        groups = [
            _household_read(h)
            for h in session.execute(
                repo.readable_households(principal).where(HouseholdGroup.grid_code == code)
                .order_by(HouseholdGroup.code)
            ).scalars()
        ]
    links = list(session.execute(
        select(GridLink.unified_code).where(GridLink.grid_code == code).order_by(GridLink.unified_code)
    ).scalars())
    return GridDetail(**_grid_read(grid, True), household_groups=groups, linked_unified=links)


def reveal_household(session: Session, principal: Principal, code: str, reason: str) -> HouseholdGroupRead:
    """Reveal a ten-household lead's personal data 查看明文: needs ``pii.reveal`` in
    scope and a reason; every reveal is audited."""
    check_action(session, principal, "pii.reveal", object_type="household_group")
    h = session.execute(select(HouseholdGroup).where(HouseholdGroup.code == code)).scalar_one_or_none()
    if h is None:
        raise NotFound("household group not found", params={"what": "household_group", "id": code})
    check_scope(session, principal, "pii.reveal", h.scope_path, object_type="household_group", object_id=code)
    reason = reason.strip()
    if len(reason) < 4:
        raise Invalid("reason too short", code="reason_required", field="reason")
    audit.record(session, principal, "pii.reveal", object_type="household_group", object_id=code,
                 scope_path=h.scope_path, detail={"reason": reason, "fields": ["lead_name", "lead_phone",
                                                                              "lead_resident_id"]})
    return _household_read(h, reveal=True)
