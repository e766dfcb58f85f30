"""Analysis use cases that hand work to the centres 分析转办:

* early warnings raised as work items 预警转工单 (:func:`raise_warnings`): each warning of
  :func:`shiyu.domains.analysis.warnings.all_warnings` becomes one work item located at the
  warned unit and owned by its centre;
* non-police calls diverted into work items 非警务警情分流 (:func:`divert_call`): an imported
  police record with ``is_police`` False becomes a work item at the call's place.

Both go through the items domain's own intake, ``items.service.create_item``, so routing,
numbering, deadlines 时限, the timeline and the audit log apply as for any other item, and
both use its Idempotency-Key mechanism with a key derived from what is raised, so raising
the same thing again returns the first item instead of making another.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.analysis.models import PoliceRecord
from shiyu.domains.analysis.warnings import WARNING_CHANNEL, EarlyWarning, all_warnings
from shiyu.domains.items import service as items
from shiyu.domains.items.config import LOCAL_TZ
from shiyu.domains.items.models import Category, WorkItem
from shiyu.domains.items.rules import KINDS
from shiyu.domains.items.schemas import ItemCreate, Kind
from shiyu.kit.errors import Conflict, Invalid, NotFound
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action, denied
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.scope import scope
from shiyu.platform.units import service as units

#: Kind of the work item a warning becomes. Not "event": the items domain requires an event
#: to have a point (lon/lat) and an event category, and a unit-level warning has neither.
WARNING_KIND: Kind = "hotline"
#: ``source`` of warning items: the closest value ``ItemCreate`` allows (a centre's own finding).
WARNING_SOURCE = "department"
#: ``source`` and ``channel`` of diverted calls (the channel is the one the demo data uses).
DIVERT_SOURCE = "police"
DIVERT_CHANNEL = "非警务警情分流"

METHOD_LABELS = {"poisson": "泊松阈值", "ewma+cusum": "EWMA 控制图与 CUSUM 累积和同时报警",
                 "overdue_share": "超期占比"}


# --------------------------------------------------------------------------- early warning 预警转工单


def warning_key(w: EarlyWarning, as_of: datetime) -> str:
    """The Idempotency-Key of a warning: kind, unit, category and the local date of ``as_of``
    (预警日期), e.g. ``warning:rising:320102001000:HL-TOPIC-01-01:2026-11-20``."""
    day = as_of.astimezone(LOCAL_TZ).date().isoformat()
    return f"warning:{w.kind}:{w.unit_code}:{w.category or '-'}:{day}"


def _warning_body(session: Session, w: EarlyWarning, key: str) -> ItemCreate:
    if w.kind == "rising":
        cat_name = (items.category_name(session, w.category) or w.category) if w.category else "未分类"
        title = f"预警：{w.unit_name}{cat_name}数量异常上升"
    else:
        title = f"预警：{w.unit_name}超期工单聚集"
    method = METHOD_LABELS.get(w.method, w.method)
    description = f"{w.message_zh}\n检测方法：{method}（{w.method}）\n预警标识：{key}"
    # The item keeps the warned category only where the items domain allows it on this kind.
    category = None
    if w.category:
        kind = session.execute(select(Category.kind).where(Category.code == w.category)).scalar_one_or_none()
        category = w.category if kind == WARNING_KIND else None
    return ItemCreate(kind=WARNING_KIND, title=title[:200], description=description[:4000], category=category,
                      unit=w.unit_code, source=WARNING_SOURCE, channel=WARNING_CHANNEL)


def _raised(session: Session, principal: Principal, w: EarlyWarning, key: str) -> WorkItem | None:
    """The item already raised for ``key`` (by anyone, seen in the principal's jurisdiction)."""
    stmt = (items.filtered(session, principal, items.ItemFilter(unit=w.unit_code))
            .where(WorkItem.channel == WARNING_CHANNEL,
                   WorkItem.description.contains(f"预警标识：{key}", autoescape=True))
            .order_by(WorkItem.id).limit(1))
    return session.execute(stmt).scalars().first()


def raise_warnings(session: Session, principal: Principal, *, unit_code: str,
                   as_of: datetime) -> list[tuple[EarlyWarning, WorkItem, bool]]:
    """Raise every early warning 预警 for ``unit_code``'s children at ``as_of`` as a work item
    预警转工单; returns (warning, item, newly created) in the order of ``all_warnings``.

    Each item is located at the warned unit (no point: the warning is about the whole unit),
    so it is owned by that unit's centre (a village's by its town, 小事不出村、大事不出镇).
    A warning already raised for the same kind, unit, category and local date of ``as_of``
    is not raised again: its item is returned with ``False``. The principal needs
    ``item.create`` there (403 otherwise; 422 ``outside_jurisdiction`` for a unit it may
    read but not create in)."""
    check_action(session, principal, "item.create", object_type="work_item")
    out: list[tuple[EarlyWarning, WorkItem, bool]] = []
    for w in all_warnings(session, principal, unit_code=unit_code, as_of=as_of):
        key = warning_key(w, as_of)
        prior = _raised(session, principal, w, key)
        if prior is not None:
            out.append((w, prior, False))
            continue
        created = items.create_item(session, principal, _warning_body(session, w, key), idempotency_key=key)
        item = created.item
        if not created.replayed:
            audit.record(session, principal, "analysis.raise_warning", object_type="work_item", object_id=item.id,
                         scope_path=item.scope_path,
                         detail={"key": key, "kind": w.kind, "unit": w.unit_code, "category": w.category,
                                 "method": w.method, "current": w.current, "expected": round(w.expected, 3),
                                 "number": item.number})
        out.append((w, item, not created.replayed))
    return out


# --------------------------------------------------------------------------- diversion 非警务警情分流


def _record_in_scope(session: Session, principal: Principal, record_id: int) -> PoliceRecord:
    """The record, locked for the diversion; 404 (audited) outside the jurisdiction."""
    stmt = scope(select(PoliceRecord), principal, "item.create", PoliceRecord.scope_path)
    record = session.execute(stmt.where(PoliceRecord.id == record_id).with_for_update()).scalar_one_or_none()
    if record is None:
        other = session.execute(select(PoliceRecord.scope_path)
                                .where(PoliceRecord.id == record_id)).scalar_one_or_none()
        if other is not None:
            denied(session, principal, "item.create", object_type="police_record", object_id=record_id,
                   scope_path=other)
        raise NotFound("police record not found", params={"what": "police_record", "id": str(record_id)})
    return record


def divert_call(session: Session, principal: Principal, record_id: int, *, kind: str = "hotline",
                category: str | None = None) -> WorkItem:
    """Divert a non-police call 非警务警情分流 into a work item of ``kind`` (a 12345 request
    by default) with the work-item ``category`` given, located at the call's point when it
    was placed in a grid, else at its unit; the record then names the item
    (``diverted_item_id``).

    404 for a record outside the principal's jurisdiction (or none at all); 409
    ``police_call`` for a police call 警务警情 and 409 ``already_diverted`` for a record
    diverted before. The items domain's intake rules apply (e.g. a dispute needs its parties,
    which calls do not carry: 422)."""
    check_action(session, principal, "item.create", object_type="work_item")
    if kind not in KINDS:
        raise Invalid(f"unknown kind {kind!r}", code="invalid", field="kind", params={"kinds": ", ".join(KINDS)})
    record = _record_in_scope(session, principal, record_id)
    if record.is_police:
        raise Conflict("a police call is handled by the police, not diverted", code="police_call",
                       params={"id": str(record_id)})
    if record.diverted_item_id is not None:
        raise Conflict("the call was diverted already", code="already_diverted",
                       params={"id": str(record_id), "item": str(record.diverted_item_id)})
    what = record.category_name or record.category
    when = record.occurred_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    stream = "警情" if record.stream == "call" else "案情"
    description = (f"非警务{stream}分流：{what}（类别 {record.category}），报警时间 {when}，"
                   f"来源 {record.source} 编号 {record.source_id}。")
    located = record.grid_code is not None and record.lon is not None and record.lat is not None
    unit_code = record.unit_code
    if not located and (unit_code is None or units.get(session, unit_code) is None):
        raise Invalid("the call has neither a point in a grid nor a unit", code="not_located", field="record_id")
    try:
        body = ItemCreate(kind=kind, title=f"非警务警情分流：{what}"[:200],  # type: ignore[arg-type]
                          description=description[:4000], category=category,
                          lon=record.lon if located else None, lat=record.lat if located else None,
                          unit=None if located else unit_code, source=DIVERT_SOURCE, channel=DIVERT_CHANNEL)
    except ValidationError as exc:  # e.g. a category code longer than any
        raise Invalid("invalid diversion", code="invalid", field="category",
                      errors=[{"field": ".".join(str(p) for p in e["loc"]), "code": e["type"], "message": e["msg"]}
                              for e in exc.errors()]) from exc
    created = items.create_item(session, principal, body, idempotency_key=f"divert:{record_id}")
    item = created.item
    record.diverted_item_id = item.id
    session.flush()
    audit.record(session, principal, "analysis.divert_call", object_type="police_record", object_id=record.id,
                 scope_path=record.scope_path,
                 detail={"item": item.id, "number": item.number, "kind": item.kind, "category": item.category_code,
                         "source": record.source, "stream": record.stream})
    return item
