"""Work items 工单: one table for the shared lifecycle, tables for each kind's own data,
assignments (dispatch and 吹哨报到), the timeline, attachments, supervision orders 督办,
duplicate links 并单, notifications, the taxonomy and deadline configuration."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shiyu.kit.db import Base, UTCDateTime
from shiyu.kit.timeutil import utcnow


class Category(Base):
    """Taxonomy 分类: editable catalogue of event classes, dispute types, petition
    categories and hotline request types."""

    __tablename__ = "categories"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16), index=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("categories.code"))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    domain: Mapped[str | None] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class SlaRule(Base):
    """Deadline configuration 时限配置: per kind, category and priority, per step."""

    __tablename__ = "sla_rules"
    __table_args__ = (UniqueConstraint("kind", "category", "priority", "step", name="uq_sla_rules_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[str | None] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(16))
    duration: Mapped[str] = mapped_column(String(16))


class Holiday(Base):
    """Holiday calendar 节假日: days off, and weekend days worked (调休)."""

    __tablename__ = "holidays"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_workday: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(50), default="")


class WorkItem(Base):
    __tablename__ = "work_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category_code: Mapped[str | None] = mapped_column(ForeignKey("categories.code"))
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    source: Mapped[str] = mapped_column(String(32), default="grid")
    channel: Mapped[str | None] = mapped_column(String(64))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(200))
    grid_code: Mapped[str | None] = mapped_column(String(32))
    #: The unit the item is located in (village, or the unit named at intake).
    unit_code: Mapped[str] = mapped_column(ForeignKey("units.code"))
    #: Materialised path of the location unit: the jurisdiction filter reads this.
    scope_path: Mapped[str] = mapped_column(String(512))
    #: The centre that owns the item (lowest level first; escalation moves it up).
    owner_code: Mapped[str] = mapped_column(ForeignKey("units.code"), index=True)
    owner_path: Mapped[str] = mapped_column(String(512))
    reporter_name: Mapped[str | None] = mapped_column(String(50))
    reporter_phone: Mapped[str | None] = mapped_column(String(20))
    reporter_id_number: Mapped[str | None] = mapped_column(String(18))
    created_by: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Deadline of the current step, and the overall handling deadline.
    step: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handle_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sla_state: Mapped[str] = mapped_column(String(12), default="ok")  # ok | due_soon | overdue
    overdue_steps: Mapped[int] = mapped_column(Integer, default=0)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    whistle: Mapped[bool] = mapped_column(Boolean, default=False)
    supervised: Mapped[bool] = mapped_column(Boolean, default=False)
    rating: Mapped[int | None] = mapped_column(Integer)
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reply_text: Mapped[str | None] = mapped_column(Text)
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("work_items.id"))
    repeat_of: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_work_items_scope_path", "scope_path", postgresql_ops={"scope_path": "text_pattern_ops"}),
        Index("ix_work_items_status_due", "status", "due_at"),
        Index("ix_work_items_kind_created", "kind", "created_at"),
        Index("ix_work_items_category_created", "category_code", "created_at"),
        Index("ix_work_items_lonlat", "lon", "lat"),
        # The duplicate search 并单 on PostgreSQL. Not on SQLite: its planner, without
        # statistics, took this index for the dashboard's per-category counts and read every
        # item (p95 ~700 ms at the medium demo instead of ~80 ms); the SQLite search uses
        # ix_work_items_lonlat.
        Index("ix_work_items_category_lonlat", "category_code", "lon", "lat").ddl_if(dialect="postgresql"),
        Index("ix_work_items_created", "created_at"),
        Index("ix_work_items_owner_status", "owner_code", "status"),
    )


class Party(Base):
    """A party to a dispute 当事人, a petitioner 信访人 or a caller 来电人: personal data, masked on read."""

    __tablename__ = "item_parties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # applicant | respondent | petitioner | caller | other
    name: Mapped[str] = mapped_column(String(50))
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(200))


class Assignment(Base):
    """A department's share of an item: dispatched 派遣 or summoned by a whistle 吹哨,
    reporting in 报到 and back 反馈."""

    __tablename__ = "item_assignments"
    __table_args__ = (UniqueConstraint("item_id", "department_code", name="uq_item_assignments_item_dept"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    department_code: Mapped[str] = mapped_column(ForeignKey("units.code"), index=True)
    mode: Mapped[str] = mapped_column(String(8))  # dispatch | whistle
    state: Mapped[str] = mapped_column(String(16))  # assigned | acknowledged | reported | returned
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ack_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    report: Mapped[str | None] = mapped_column(Text)
    #: Set once the SLA tick has flagged a missed report-in deadline (报到超时).
    ack_overdue: Mapped[bool] = mapped_column(Boolean, default=False)


class TimelineEntry(Base):
    """Every step 全过程留痕: who, when, what, why."""

    __tablename__ = "item_timeline"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(32))
    unit_code: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Attachment(Base):
    __tablename__ = "item_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Supervision(Base):
    """Supervision order 督办: a leader flags an item; tracked with its own deadline."""

    __tablename__ = "item_supervisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    issued_by: Mapped[str] = mapped_column(String(64))
    unit_code: Mapped[str | None] = mapped_column(String(32))
    scope_path: Mapped[str] = mapped_column(String(512))
    note: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | resolved | overdue


class DuplicateLink(Base):
    """A possible duplicate 疑似重复: a new item near an open one of the same category."""

    __tablename__ = "item_duplicates"
    __table_args__ = (UniqueConstraint("item_id", "candidate_id", name="uq_item_duplicates_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    distance_m: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(12), default="pending")  # pending | merged | dismissed


class IdempotencyKey(Base):
    """Idempotent intake: one key per user maps to the item it created."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "key", name="uq_idempotency_keys_principal_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """In-app notification 站内消息 to a unit's inbox (and, through channels, SMS/WeCom)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_code: Mapped[str] = mapped_column(String(32), index=True)
    scope_path: Mapped[str] = mapped_column(String(512))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    message: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
