"""HTTP adapter of work items 工单."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from shiyu.domains.items import intake, rules, service
from shiyu.domains.items.models import Notification, WorkItem
from shiyu.domains.items.schemas import (
    ActionIn,
    ItemCreate,
    ItemPage,
    ItemRead,
    ItemSummary,
    SupervisionIn,
    SupervisionRead,
    TimelineRead,
)
from shiyu.domains.items.views import item_read
from shiyu.kit.errors import Invalid, NotFound
from shiyu.kit.pii import mask_name, mask_phone
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action, check_scope, denied
from shiyu.platform.authz.scope import scope
from shiyu.platform.web.deps import (
    CheckedTokenDep,
    PrincipalDep,
    SessionDep,
    get_db,
    request_id,
    resolve_principal,
)

router = APIRouter(prefix="/api/v1", tags=["items"])

#: Ids are INTEGER columns: a larger one would be a 500 on PostgreSQL ("integer out of range").
MAX_ID = 2**31 - 1
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]
EXPORT_LIMIT = 50_000


def _summary(i: WorkItem) -> ItemSummary:
    return ItemSummary(id=i.id, number=i.number, kind=i.kind, status=i.status, title=i.title,
                       category=i.category_code, priority=i.priority, unit_code=i.unit_code, owner_code=i.owner_code,
                       grid_code=i.grid_code, created_at=i.created_at, due_at=i.due_at, sla_state=i.sla_state,
                       supervised=i.supervised, whistle=i.whistle)


class _Filters:
    def __init__(
        self,
        kind: Annotated[str | None, Query(pattern="^(event|dispute|petition|hotline)$")] = None,
        status: Annotated[list[str] | None, Query(max_length=11)] = None,
        category: Annotated[str | None, Query(max_length=32, pattern=r"^[A-Z0-9-]+$")] = None,
        unit: Annotated[str | None, Query(max_length=32, pattern=r"^[0-9A-Z-]+$")] = None,
        overdue: bool | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        q: Annotated[str | None, Query(max_length=100)] = None,
        mine: bool = False,
        supervised: bool | None = None,
        repeat: bool | None = None,
        backlog: bool | None = None,
        open: bool = False,
        priority: Annotated[str | None, Query(pattern="^(low|normal|high|urgent)$")] = None,
    ) -> None:
        bad = [s for s in (status or []) if s not in rules.STATES]
        if bad:
            raise Invalid("unknown status", code="invalid", field="status")
        self.f = service.ItemFilter(kind=kind, status=status or None, category=category, unit=unit, overdue=overdue,
                                    since=since, until=until, q=q, mine=mine, supervised=supervised, repeat=repeat,
                                    backlog=backlog, open_only=open, priority=priority)





@router.post("/items", response_model=ItemRead, status_code=201, summary="Take in a work item 上报",
             description="Requests arriving together are taken in together, in one transaction (group "
                         "commit, ``items.intake``); each is checked on its own and answered only once its "
                         "batch has committed.",
             responses={200: {"model": ItemRead, "description": "Replay: the item the same Idempotency-Key and "
                                                                "body made before"}})
async def create_item(
    body: ItemCreate,
    request: Request,
    token: CheckedTokenDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> Response:
    out = await intake.batcher(get_db(request), resolve_token).submit(
        intake.IntakeRequest(token=token, data=body, idempotency_key=idempotency_key,
                             request_id=request_id(request), path=request.url.path))
    if out.error is not None:
        raise out.error
    assert out.item is not None and out.etag is not None
    return Response(out.item.model_dump_json(), status_code=out.status, media_type="application/json",
                    headers={"ETag": out.etag, "Location": f"/api/v1/items/{out.item.id}"})


def resolve_token(session: Any, token: str, rid: str | None, path: str) -> Any:
    """The batch's principal lookup (``intake.ResolvePrincipal``)."""
    return resolve_principal(session, token, request_id=rid, path=path)


@router.get("/items", response_model=ItemPage, summary="Work items in the jurisdiction, overdue first")
def list_items(
    session: SessionDep,
    principal: PrincipalDep,
    filters: Annotated[_Filters, Depends()],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ItemPage:
    stmt = service.filtered(session, principal, filters.f)
    total = service.count(session, stmt)
    rows = session.execute(service.inbox_order(stmt).limit(limit).offset(offset)).scalars()
    return ItemPage(items=[_summary(i) for i in rows], total=total, limit=limit, offset=offset)


EXPORT_COLUMNS = (
    ("number", "编号"), ("kind", "类型"), ("status", "状态"), ("title", "标题"), ("category", "分类"),
    ("priority", "优先级"), ("unit_code", "所在单位"), ("owner_code", "责任中心"), ("grid_code", "网格"),
    ("created_at", "上报时间"), ("due_at", "当前时限"), ("sla_state", "时限状态"), ("reporter_name", "上报人"),
    ("reporter_phone", "联系电话"), ("rating", "满意度"),
)


def _export_row(i: WorkItem) -> list[Any]:
    return [i.number, rules.KIND_LABELS.get(i.kind, i.kind), rules.STATE_LABELS.get(i.status, i.status), i.title,
            i.category_code or "", i.priority, i.unit_code, i.owner_code, i.grid_code or "",
            i.created_at.isoformat(), i.due_at.isoformat() if i.due_at else "", i.sla_state,
            mask_name(i.reporter_name) if i.reporter_name else "",
            mask_phone(i.reporter_phone) if i.reporter_phone else "", i.rating or ""]


@router.get("/items/export", summary="Export the filtered list to CSV or Excel (masked, scoped)",
            response_class=StreamingResponse)
def export_items(
    session: SessionDep,
    principal: PrincipalDep,
    filters: Annotated[_Filters, Depends()],
    format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv",
) -> StreamingResponse:
    check_action(session, principal, "item.export", object_type="work_item")
    stmt = service.inbox_order(service.filtered(session, principal, filters.f)).limit(EXPORT_LIMIT)
    rows = session.execute(stmt).scalars().all()
    audit.record_detached(session, principal, "item.export", object_type="work_item", result="ok",
                          detail={"format": format, "rows": len(rows)})
    stamp = utcnow().strftime("%Y%m%d%H%M%S")
    if format == "csv":
        buf = io.StringIO()
        buf.write("\ufeff")  # Excel opens UTF-8 CSV correctly with a BOM
        w = csv.writer(buf)
        w.writerow([zh for _, zh in EXPORT_COLUMNS])
        for i in rows:
            w.writerow(_export_row(i))
        data = buf.getvalue().encode("utf-8")
        media, ext = "text/csv; charset=utf-8", "csv"
    else:
        from openpyxl import Workbook

        wb = Workbook(write_only=True)
        ws = wb.create_sheet("工单")
        ws.append([zh for _, zh in EXPORT_COLUMNS])
        for i in rows:
            ws.append(_export_row(i))
        out = io.BytesIO()
        wb.save(out)
        data = out.getvalue()
        media, ext = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"
    return StreamingResponse(iter([data]), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="items-{stamp}.{ext}"'})


@router.get("/items/{item_id}", response_model=ItemRead, summary="One work item")
def get_item(item_id: ItemId, response: Response, session: SessionDep, principal: PrincipalDep) -> ItemRead:
    item = service.get_item(session, principal, item_id)
    response.headers["ETag"] = service.etag(item)
    return item_read(session, principal, item)


class RevealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=4, max_length=500)


@router.post("/items/{item_id}/reveal", response_model=ItemRead,
             summary="Reveal the personal data of an item's reporter and parties (audited)")
def reveal_item(item_id: ItemId, body: RevealIn, session: SessionDep, principal: PrincipalDep) -> ItemRead:
    check_action(session, principal, "pii.reveal", object_type="work_item")
    item = service.get_item(session, principal, item_id, action="pii.reveal")
    check_scope(session, principal, "pii.reveal", item.scope_path, object_type="work_item", object_id=item.id)
    audit.record(session, principal, "pii.reveal", object_type="work_item", object_id=item.id,
                 scope_path=item.scope_path, detail={"reason": body.reason.strip()})
    return item_read(session, principal, item, reveal=True)


@router.post("/items/{item_id}/actions/{action}", response_model=ItemRead, summary="Run a lifecycle action")
def act(
    item_id: ItemId,
    action: Annotated[str, Path(pattern="^[a-z_]{2,20}$")],
    body: ActionIn,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=200)] = None,
) -> ItemRead:
    item = service.act(session, principal, item_id, action, body, if_match=if_match)
    session.flush()
    response.headers["ETag"] = service.etag(item)
    return item_read(session, principal, item)


@router.get("/items/{item_id}/timeline", response_model=list[TimelineRead], summary="Every step, in order")
def item_timeline(item_id: ItemId, session: SessionDep, principal: PrincipalDep) -> list[TimelineRead]:
    return [TimelineRead.model_validate(t, from_attributes=True)
            for t in service.timeline(session, principal, item_id)]


@router.post("/items/{item_id}/attachments", status_code=201, summary="Attach a photo or PDF (<= 5 MB)")
def upload_attachment(
    item_id: ItemId,
    file: UploadFile,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=200)] = None,
) -> dict[str, Any]:
    # A plain def: the database work below must not block the event loop.
    raw = file.file.read(service.MAX_ATTACHMENT_BYTES + 1)
    att = service.add_attachment(session, principal, item_id, filename=file.filename or "file",
                                 content_type=file.content_type or "", raw=raw, if_match=if_match)
    session.flush()
    return {"id": att.id, "filename": att.filename, "content_type": att.content_type, "size": att.size}


@router.get("/items/{item_id}/attachments/{attachment_id}", summary="Download an attachment")
def download_attachment(item_id: ItemId, attachment_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                        session: SessionDep, principal: PrincipalDep) -> Response:
    att = service.get_attachment(session, principal, item_id, attachment_id)
    return Response(att.content, media_type=att.content_type,
                    headers={"Content-Disposition": f'inline; filename="attachment-{att.id}"'})


@router.post("/items/{item_id}/supervisions", response_model=SupervisionRead, status_code=201,
             summary="Issue a supervision order 督办")
def supervise(item_id: ItemId, body: SupervisionIn, session: SessionDep, principal: PrincipalDep) -> SupervisionRead:
    sup = service.supervise(session, principal, item_id, note=body.note, days=body.days)
    return SupervisionRead.model_validate(sup, from_attributes=True)


@router.get("/items/{item_id}/supervisions", response_model=list[SupervisionRead])
def list_supervisions(item_id: ItemId, session: SessionDep, principal: PrincipalDep) -> list[SupervisionRead]:
    item = service.get_item(session, principal, item_id)
    return [SupervisionRead.model_validate(s, from_attributes=True) for s in service.supervisions_of(session, item.id)]


@router.post("/items/{item_id}/supervisions/{supervision_id}/resolve", response_model=SupervisionRead)
def resolve_supervision(item_id: ItemId, supervision_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                        session: SessionDep, principal: PrincipalDep) -> SupervisionRead:
    sup = service.resolve_supervision(session, principal, item_id, supervision_id)
    return SupervisionRead.model_validate(sup, from_attributes=True)


@router.post("/items/{item_id}/duplicates/{candidate_id}/dismiss", status_code=204,
             summary="Dismiss a possible duplicate")
def dismiss_duplicate(item_id: ItemId, candidate_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                      session: SessionDep, principal: PrincipalDep) -> None:
    service.dismiss_duplicate(session, principal, item_id, candidate_id)


class MediationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    record: str = Field(pattern="^(session|agreement|visit)$", description="调解 session, 协议 agreement, 回访 visit")
    note: str = Field(min_length=2, max_length=4000)
    outcome: str | None = Field(default=None, pattern="^(agreed|partial|failed|adjourned)$")
    satisfied: bool | None = None
    at: AwareDatetime | None = None


@router.post("/items/{item_id}/mediation", response_model=ItemRead, summary="Record mediation on a dispute 调解")
def record_mediation(
    item_id: ItemId,
    body: MediationIn,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=200)] = None,
) -> ItemRead:
    item = service.record_mediation(session, principal, item_id, record=body.record, note=body.note,
                                    outcome=body.outcome, satisfied=body.satisfied, at=body.at, if_match=if_match)
    session.flush()
    response.headers["ETag"] = service.etag(item)
    return item_read(session, principal, item)


class NotificationRead(BaseModel):
    id: int
    unit_code: str
    item_id: int | None
    kind: str
    message: str
    created_at: datetime
    read_at: datetime | None


@router.get("/notifications", response_model=list[NotificationRead], tags=["notifications"],
            summary="The in-app inbox of my unit 站内消息")
def notifications(session: SessionDep, principal: PrincipalDep, unread: bool = False,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[NotificationRead]:
    check_action(session, principal, "item.read", object_type="notification")
    stmt = scope(select(Notification), principal, "item.read", Notification.scope_path)
    if principal.unit_code:
        stmt = stmt.where(Notification.unit_code == principal.unit_code)
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    rows = session.execute(stmt.order_by(Notification.id.desc()).limit(limit)).scalars()
    return [NotificationRead.model_validate(n, from_attributes=True) for n in rows]


@router.post("/notifications/{notification_id}/read", status_code=204, tags=["notifications"])
def mark_read(notification_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: SessionDep,
              principal: PrincipalDep) -> None:
    stmt = scope(select(Notification), principal, "item.read", Notification.scope_path).where(
        Notification.id == notification_id, Notification.unit_code == principal.unit_code)
    note = session.execute(stmt).scalar_one_or_none()
    if note is None:
        other = session.get(Notification, notification_id)
        if other is not None:
            denied(session, principal, "item.read", object_type="notification", object_id=notification_id,
                   scope_path=other.scope_path)
        raise NotFound("notification not found", params={"what": "notification", "id": str(notification_id)})
    note.read_at = utcnow()
