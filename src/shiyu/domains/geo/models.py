"""Geography 地理: grid layers 网格图层, grids 网格, unit boundaries and ten-household units 十联户.

Geometries are stored as WKB (no spatial extension needed on either database), with
their bounding box in plain columns. Every scoped row carries ``scope_path``: the
materialised path of the village/community it belongs to.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from shiyu.kit.db import Base, UTCDateTime
from shiyu.kit.timeutil import utcnow


class GridLayer(Base):
    """A grid layer: the unified safety grid 统一网格 and the layers mapped onto it
    (police beats 警务网格, urban-management grids 城管网格, party-building grids 党建网格)."""

    __tablename__ = "grid_layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_unified: Mapped[bool] = mapped_column(Boolean, default=False)


class Grid(Base):
    __tablename__ = "grids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    layer_code: Mapped[str] = mapped_column(ForeignKey("grid_layers.code"), index=True)
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"), index=True)
    scope_path: Mapped[str] = mapped_column(String(512))
    geom: Mapped[bytes] = mapped_column(LargeBinary)
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_grids_scope_path", "scope_path", postgresql_ops={"scope_path": "text_pattern_ops"}),
    )


class GridLink(Base):
    """多格合一: a grid of another layer mapped onto the unified grids it overlaps."""

    __tablename__ = "grid_links"

    grid_code: Mapped[str] = mapped_column(ForeignKey("grids.code", ondelete="CASCADE"), primary_key=True)
    unified_code: Mapped[str] = mapped_column(ForeignKey("grids.code", ondelete="CASCADE"), primary_key=True,
                                              index=True)
    #: Share of the unified grid's area covered by the other grid (0..1].
    share: Mapped[float] = mapped_column(Float)


class UnitBoundary(Base):
    """The boundary polygon of an administrative unit, when known."""

    __tablename__ = "unit_boundaries"

    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code", ondelete="CASCADE"), primary_key=True)
    geom: Mapped[bytes] = mapped_column(LargeBinary)


class HouseholdGroup(Base):
    """Ten-household unit 十联户: about ten households inside a grid, with a lead 十联户长."""

    __tablename__ = "household_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    grid_code: Mapped[str] = mapped_column(ForeignKey("grids.code", ondelete="CASCADE"), index=True)
    scope_path: Mapped[str] = mapped_column(String(512), index=True)
    lead_name: Mapped[str] = mapped_column(String(50))
    lead_phone: Mapped[str | None] = mapped_column(String(20))
    lead_resident_id: Mapped[str | None] = mapped_column(String(18))
    households: Mapped[int] = mapped_column(Integer, default=10)


class GeoRevision(Base):
    """A counter bumped by every geography write; cached spatial indexes rebuild when it moves."""

    __tablename__ = "geo_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(Integer, default=0)
