"""Rules of geography 地理规则: what a valid grid or boundary is. Pure functions."""

from __future__ import annotations

import re
from typing import Any, Final

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

GRID_CODE_RE: Final = re.compile(r"^[0-9A-Z][0-9A-Z-]{3,31}$")
FEATURE_KINDS: Final = ("city", "district", "town", "village", "department", "grid")
UNIFIED_LAYER: Final = "unified"
DEFAULT_LAYERS: Final = {
    "unified": "统一网格",
    "police": "警务网格",
    "urban": "城管网格",
    "party": "党建网格",
}
#: Overlap tolerated between two grids of the unified layer, in squared degrees
#: (about 1 m² at these latitudes): shared edges, not shared land.
OVERLAP_TOLERANCE: Final = 1e-10
#: Share of a grid's area allowed to lie outside its village boundary.
OUTSIDE_TOLERANCE: Final = 1e-6


def parse_geometry(raw: Any) -> tuple[BaseGeometry | None, str | None]:
    """GeoJSON geometry -> (shapely geometry, None) or (None, reason)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict) or "type" not in raw:
        return None, "geometry must be a GeoJSON object"
    try:
        geom = shape(raw)
    except Exception as exc:  # shapely raises several types on malformed input
        return None, f"geometry is malformed: {exc}"
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return None, "geometry must be a Polygon or MultiPolygon"
    if geom.is_empty:
        return None, "geometry is empty"
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        return None, "coordinates must be longitude/latitude in degrees (WGS 84)"
    if not shapely.is_valid(geom):
        return None, f"geometry is invalid: {shapely.is_valid_reason(geom)}"
    return geom, None


def outside_share(inner: BaseGeometry, outer: BaseGeometry) -> float:
    """Share of ``inner``'s area that lies outside ``outer``."""
    if inner.area == 0:
        return 0.0
    return float(inner.difference(outer).area / inner.area)
