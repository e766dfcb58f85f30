"""Imported police records 警情/案情: police calls (110 警情) and cases (案情) arrive from the
police systems as imported records (``shiyu analysis import-calls``), never as work items.

No personal data is kept: caller names, phone numbers and ID numbers are not imported.
A non-police call (``is_police`` False, 非警务警情) may later be diverted 分流 into a work
item; ``diverted_item_id`` then names that item.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shiyu.domains.items import models as _items_models  # noqa: F401  (work_items: a foreign key target)
from shiyu.kit.db import Base, UTCDateTime
from shiyu.kit.timeutil import utcnow
from shiyu.platform.units import models as _units_models  # noqa: F401  (units: a foreign key target)

STREAMS = ("call", "case")


class PoliceRecord(Base):
    __tablename__ = "police_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: "call" 警情 | "case" 案情
    stream: Mapped[str] = mapped_column(String(8))
    #: The record's identifier in the source system (警情编号 / 案件编号).
    source_id: Mapped[str] = mapped_column(String(64))
    #: Name of the source system, from the import mapping.
    source: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Free category code of the source (e.g. the 110 call type 警情类别).
    category: Mapped[str] = mapped_column(String(64))
    category_name: Mapped[str] = mapped_column(String(100), default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    grid_code: Mapped[str | None] = mapped_column(String(32))
    unit_code: Mapped[str | None] = mapped_column(ForeignKey("units.code"))
    #: Materialised path of the located unit: the jurisdiction filter reads this.
    scope_path: Mapped[str] = mapped_column(String(512))
    #: False for a non-police call 非警务警情, which may be diverted into a work item.
    is_police: Mapped[bool] = mapped_column(Boolean, default=True)
    diverted_item_id: Mapped[int | None] = mapped_column(ForeignKey("work_items.id"))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    batch: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_police_records_stream_occurred", "stream", "occurred_at"),
        Index("ix_police_records_scope_path", "scope_path", postgresql_ops={"scope_path": "text_pattern_ops"}),
        Index("uq_police_records_source_key", "source", "stream", "source_id", unique=True),
    )
