"""The unit tree 单位树: administrative units (city 市 > district 区县 > town 乡镇街道 >
village 村社区) and departments 职能部门, with a materialised path for subtree queries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shiyu.kit.db import Base, UTCDateTime
from shiyu.kit.timeutil import utcnow


class Unit(Base):
    """An administrative unit or a department. ``path`` lists the codes from the city
    down to this unit (``/320100000000/320102000000/``); "all descendants of X" is
    ``path LIKE X.path || '%'`` on an indexed column."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    level: Mapped[int] = mapped_column(Integer)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"), index=True)
    path: Mapped[str] = mapped_column(String(512))
    category: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_units_path", "path", postgresql_ops={"path": "text_pattern_ops"}),
        Index("ix_units_kind", "kind"),
    )

    @property
    def is_admin(self) -> bool:
        return self.kind != "department"
