"""Open311 tables 开放311接口: partners' API keys and the link from each request that came in
through Open311 (or the citizens' page) to its work item.

Only the SHA-256 of an API key or a tracking token is stored: the plain value is shown once,
when it is issued. The citizen's e-mail address is personal data: stored for the centre to
reply, never returned by any Open311 response.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shiyu.domains.items import models as _items_models  # noqa: F401  (work_items: a foreign key target)
from shiyu.kit.db import Base, UTCDateTime
from shiyu.kit.timeutil import utcnow


class ApiKey(Base):
    """A partner's API key 接入方密钥: issued by an admin, stored hashed, revocable."""

    __tablename__ = "open311_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The partner 接入方 (an app, kiosk or city system); recorded as the items' channel 渠道.
    partner: Mapped[str] = mapped_column(String(48), unique=True)
    #: SHA-256 (hex) of the key.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The key's first characters, to tell keys apart in listings (not enough to use it).
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Last request accepted with this key, and how many were.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    use_count: Mapped[int] = mapped_column(Integer, default=0)


class Open311Request(Base):
    """A service request 服务请求 received through Open311 or the citizens' page, linked to the
    hotline work item it became. Only these items are public through Open311."""

    __tablename__ = "open311_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id", ondelete="CASCADE"), unique=True)
    #: SHA-256 (hex) of the tracking token 查询码 given to the reporter.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    partner: Mapped[str] = mapped_column(String(48))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("open311_api_keys.id"))
    #: The jurisdiction_id the request was filed under (a city or district code).
    jurisdiction_code: Mapped[str] = mapped_column(String(32))
    #: Materialised path of the item's unit: the jurisdiction filter reads this.
    scope_path: Mapped[str] = mapped_column(String(512))
    service_code: Mapped[str] = mapped_column(String(32))
    #: Values of the service definition's attributes, by attribute code.
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    media_url: Mapped[str | None] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(254))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_open311_requests_scope_path", "scope_path", postgresql_ops={"scope_path": "text_pattern_ops"}),
        Index("ix_open311_requests_requested_at", "requested_at"),
    )
