"""HTTP adapter of the audit log 审计日志: auditors and admins only, scoped by jurisdiction."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field, field_serializer
from sqlalchemy import func, or_, select

from shiyu.platform.audit.guard import check_action
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.scope import scope
from shiyu.platform.web.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/api/v1", tags=["audit"])


class AuditRead(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str | None
    unit_code: str | None
    action: str
    object_type: str | None
    object_id: str | None
    result: str
    request_id: str | None
    detail: dict[str, Any]
    hash: str = Field(description="SHA-256 of the entry, hex in 8-character groups joined by ':'")

    @field_serializer("hash")
    def _grouped(self, value: str) -> str:
        # Plain hex can hold a run of digits that reads as a phone number or resident ID
        # (a few entries in a thousand); no group of 8 can.
        plain = value.replace(":", "")  # idempotent: the response model may serialise twice
        return ":".join(plain[i : i + 8] for i in range(0, len(plain), 8))


class AuditPage(BaseModel):
    items: list[AuditRead]
    total: int
    limit: int
    offset: int


@router.get("/audit", response_model=AuditPage)
def list_audit(
    session: SessionDep,
    principal: PrincipalDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    object_type: Annotated[str | None, Query(max_length=32)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    result: Annotated[str | None, Query(pattern="^(ok|denied|failed)$")] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPage:
    check_action(session, principal, "audit.read", object_type="audit")
    stmt = scope(select(AuditEntry), principal, "audit.read", AuditEntry.scope_path)
    roots = [p for p in principal.paths_for("audit.read") if p.count("/") <= 2]
    if roots:
        # Auditors of a whole city also see entries tied to no unit (e.g. unknown usernames).
        stmt = select(AuditEntry).where(or_(stmt.whereclause if stmt.whereclause is not None else True,
                                            AuditEntry.scope_path.is_(None)))
    for col, val in ((AuditEntry.action, action), (AuditEntry.actor, actor), (AuditEntry.object_type, object_type),
                     (AuditEntry.object_id, object_id), (AuditEntry.result, result)):
        if val is not None:
            stmt = stmt.where(col == val)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(stmt.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset)).scalars()
    return AuditPage(items=[AuditRead.model_validate(r, from_attributes=True) for r in rows], total=total,
                     limit=limit, offset=offset)
