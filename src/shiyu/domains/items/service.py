"""Work-item use cases 工单: intake, the lifecycle, routing and 吹哨报到, deadlines,
escalation, supervision 督办, duplicates 并单, replies, reads and exports.

Services flush and never commit; the request or job edge commits once. Every change
writes the timeline and the audit log in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, or_, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shiyu.domains.geo import service as geo
from shiyu.domains.items import config, rules
from shiyu.domains.items.models import (
    Assignment,
    Attachment,
    Category,
    DuplicateLink,
    IdempotencyKey,
    Party,
    Supervision,
    TimelineEntry,
    WorkItem,
)
from shiyu.domains.items.notify import notify
from shiyu.domains.items.schemas import ActionIn, ItemCreate, PartyIn, PersonIn
from shiyu.kit.db import fetch, insert_rows, per_database
from shiyu.kit.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, PreconditionFailed
from shiyu.kit.pii import PiiError, validate_mobile, validate_resident_id
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action, check_filter, check_scope, denied
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.scope import scope
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit
from shiyu.platform.workflow.calendar import Duration

NUMBER_PREFIX = {"event": "SJ", "dispute": "JF", "petition": "XF", "hotline": "RX"}
ATTACHMENT_TYPES = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (b"RIFF",),
    "application/pdf": (b"%PDF-",),
}
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
DUPLICATE_RADIUS_M = 150.0
DUPLICATE_WINDOW = timedelta(hours=72)
#: Candidates linked to a new item: the nearest this many within the radius. A dispatcher
#: deciding on a merge looks at the few nearest open reports; fifty (the old limit) made
#: every report at a busy spot carry and store fifty links, most of them of no use.
DUPLICATE_LIMIT = 10
#: Multi-row statements go in pages of this many rows, padded where that is harmless, so a
#: statement's text does not change with the batch size: psycopg parses each distinct text
#: once (an LRU of 128, and only texts up to 4 kB), and parsing a statement of thousands of
#: parameters again costs tens of milliseconds.
PAGE = 32
DUE_SOON = timedelta(hours=4)


class PreconditionRequired(DomainError):
    status = 428
    code = "precondition_required"


# --------------------------------------------------------------------------- helpers

def etag(item: WorkItem) -> str:
    return f'"{item.id}-{item.version}"'


def _timeline(session: Session, principal: Principal, item: WorkItem, action: str, *, before: str | None,
              note: str | None = None, data: dict[str, Any] | None = None) -> None:
    session.add(TimelineEntry(item_id=item.id, at=utcnow(), actor=principal.username, role=principal.role,
                              unit_code=principal.unit_code, action=action, from_status=before,
                              to_status=item.status, note=note, data=data or {}))


def _audit(session: Session, principal: Principal, item: WorkItem, action: str, detail: dict[str, Any]) -> None:
    audit.record(session, principal, f"item.{action}", object_type="work_item", object_id=item.id,
                 scope_path=item.scope_path, detail=detail)


def _person_errors(prefix: str, p: PersonIn) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    idn = phone = None
    if p.id_number:
        try:
            idn = validate_resident_id(p.id_number).value
        except PiiError as exc:
            errors.append({"field": f"{prefix}.id_number", "code": exc.code, "message": exc.message_zh,
                           "message_en": exc.message_en})
    if p.phone:
        try:
            phone = validate_mobile(p.phone)
        except PiiError as exc:
            errors.append({"field": f"{prefix}.phone", "code": exc.code, "message": exc.message_zh,
                           "message_en": exc.message_en})
    return idn, phone, errors


def _decode_attachment(i: int, a: Any) -> tuple[bytes, list[dict[str, Any]]]:
    field = f"attachments[{i}]"
    if a.content_type not in ATTACHMENT_TYPES:
        return b"", [{"field": f"{field}.content_type", "code": "attachment_type",
                      "message": "只接受 JPEG、PNG、WebP 图片或 PDF", "message_en": "Only JPEG, PNG, WebP or PDF"}]
    try:
        raw = base64.b64decode(a.data, validate=True)
    except (binascii.Error, ValueError):
        return b"", [{"field": f"{field}.data", "code": "attachment_encoding", "message": "附件须为 base64 编码",
                      "message_en": "Attachment data must be base64"}]
    return raw, check_attachment(field, a.content_type, raw)


def check_attachment(field: str, content_type: str, raw: bytes) -> list[dict[str, Any]]:
    if len(raw) == 0 or len(raw) > MAX_ATTACHMENT_BYTES:
        return [{"field": f"{field}.data", "code": "attachment_size", "message": "附件须为 1 字节至 5 MB",
                 "message_en": "Attachments must be 1 byte to 5 MB"}]
    magics = ATTACHMENT_TYPES.get(content_type)
    if magics is None:
        return [{"field": f"{field}.content_type", "code": "attachment_type",
                 "message": "只接受 JPEG、PNG、WebP 图片或 PDF", "message_en": "Only JPEG, PNG, WebP or PDF"}]
    ok = any(raw.startswith(m) for m in magics)
    if content_type == "image/webp":
        ok = ok and raw[8:12] == b"WEBP"
    if not ok:
        return [{"field": f"{field}.data", "code": "attachment_mismatch", "message": "附件内容与声明的类型不符",
                 "message_en": "Attachment content does not match its declared type"}]
    return []


def request_hash(data: ItemCreate) -> str:
    return hashlib.sha256(json.dumps(data.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


_UNIT_TTL = 60.0


@dataclass(frozen=True)
class UnitRef:
    """What intake needs of a unit, as a plain value (safe to share between sessions)."""
    code: str
    path: str
    kind: str
    parent_code: str | None

    @property
    def is_admin(self) -> bool:
        return self.kind != "department"


def unit_of(session: Session, code: str) -> UnitRef | None:
    """A unit for intake, remembered per database for a minute (a flood of new items lies
    in a few hundred units; a unit's code, kind, parent and path do not change while it has
    items). Only units found are remembered."""
    cache: dict[str, tuple[float, UnitRef]] = per_database(session).setdefault("items.units", {})
    now = time.monotonic()
    hit = cache.get(code)
    if hit is not None and now - hit[0] < _UNIT_TTL:
        return hit[1]
    unit = units.get(session, code)
    if unit is None:
        return None
    ref = UnitRef(unit.code, unit.path, unit.kind, unit.parent_code)
    if len(cache) > 100_000:
        cache.clear()
    cache[code] = (now, ref)
    return ref


def _owner_for(session: Session, unit: UnitRef) -> UnitRef:
    """The lowest centre that owns an item located in ``unit``: the town 乡镇街道 of a
    village; otherwise the unit itself (小事不出村、大事不出镇)."""
    if unit.kind == "village" and unit.parent_code:
        parent = unit_of(session, unit.parent_code)
        if parent is not None:
            return parent
    return unit


def _new_number(kind: str, now: datetime) -> str:
    """Kind prefix, local date, 40 random bits (collisions are retried): SJ20261129-9F3A07C21B."""
    day = now.astimezone(config.LOCAL_TZ).strftime("%Y%m%d")
    return f"{NUMBER_PREFIX[kind]}{day}-{secrets.token_hex(5).upper()}"


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


# --------------------------------------------------------------------------- intake

@dataclass(frozen=True)
class Created:
    item: WorkItem
    replayed: bool


@dataclass
class Prepared:
    """An item checked and built in memory, not yet written: what ``prepare_item`` hands
    to the writer (one item here, or a whole batch in ``items.intake``)."""
    item: WorkItem
    owner: UnitRef
    parties: list[tuple[PartyIn, str | None, str | None]]
    files: list[tuple[Any, bytes]]
    party_rows: list[Party] = field(default_factory=list)


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def check_key(idempotency_key: str | None) -> str:
    if not idempotency_key or not (1 <= len(idempotency_key) <= 128):
        raise Invalid("Idempotency-Key header required", code="idempotency_key_required", field="Idempotency-Key")
    return idempotency_key


def create_item(session: Session, principal: Principal, data: ItemCreate, *, idempotency_key: str | None,
                now: datetime | None = None) -> Created:
    """Take in an item 上报. Validates everything before writing anything; with an
    Idempotency-Key the same key and body return the original item, another body 422.
    (``items.intake`` takes in many requests in one transaction with the same checks.)"""
    check_action(session, principal, "item.create", object_type="work_item")
    idempotency_key = check_key(idempotency_key)
    req_hash = request_hash(data)
    prior = _replay(session, principal, idempotency_key, req_hash)
    if prior is not None:
        return Created(prior, True)
    now = now or utcnow()
    prep = prepare_item(session, principal, data, now)
    item, owner, parties, files = prep.item, prep.owner, prep.parties, prep.files
    for attempt in range(5):
        try:
            # The item is added inside the savepoint (begin_nested flushes whatever is pending
            # first): when an insert fails, rolling back the savepoint drops the item too.
            with session.begin_nested():
                session.add(item)
                session.flush()
                session.add(IdempotencyKey(principal=principal.username, key=idempotency_key,
                                           request_hash=req_hash, item_id=item.id))
                session.flush()
            break
        except IntegrityError:
            # A concurrent request with the same key won: return its item (or 422 for
            # another body). Otherwise the random number collided: draw another.
            prior = _replay(session, principal, idempotency_key, req_hash)
            if prior is not None:
                return Created(prior, True)
            if attempt == 4:
                raise
            item.number = _new_number(data.kind, now)
    for p, idn, phone in parties:
        session.add(Party(item_id=item.id, role=p.role, name=p.name, id_number=idn, phone=phone, address=p.address))
    for a, raw in files:
        session.add(Attachment(item_id=item.id, filename=a.filename, content_type=a.content_type, size=len(raw),
                               sha256=sha256_hex(raw), content=raw, uploaded_by=principal.username))
    if data.kind == "petition":
        flag_repeat_petition(session, item, parties)
    session.flush()
    _timeline(session, principal, item, "report", before=None, note=None,
              data={"source": data.source, "grid": item.grid_code})
    _audit(session, principal, item, "create", create_detail(item))
    notify(session, unit_code=owner.code, scope_path=owner.path, item_id=item.id, kind="new",
           message=new_item_message(item))
    find_duplicates(session, [item], now)
    return Created(item, False)


def create_detail(item: WorkItem) -> dict[str, Any]:
    """The audit detail of a new item."""
    return {"kind": item.kind, "number": item.number, "category": item.category_code}


def new_item_message(item: WorkItem) -> str:
    """The owner centre's notification of a new item."""
    return f"新{rules.KIND_LABELS[item.kind]} {item.number}: {item.title}"


_UNLOCATED: Any = object()
_ITEMS = sa_inspect(WorkItem).class_manager


def _new_item(**values: Any) -> WorkItem:
    """A transient ``WorkItem`` with ``values`` set, as ``WorkItem(**values)`` makes it but
    without an attribute event per column (the model has no validators or listeners, and
    an INSERT, ORM or Core, reads a new object's values from its dictionary): intake
    builds dozens of these per batch."""
    item = _ITEMS.new_instance()
    item.__dict__.update(values)
    return item


def prepare_item(session: Session, principal: Principal, data: ItemCreate, now: datetime, *,
                 located: tuple[str, str] | None = _UNLOCATED) -> Prepared:
    """Check a new item against the catalogue, the grids and the principal's jurisdiction
    and build it in memory; raise ``Invalid`` listing every field at fault. Writes nothing
    (an out-of-jurisdiction location records a detached denial). ``located`` is the
    point's ``geo.grids_at`` result when the caller located many points at once."""
    errors: list[dict[str, Any]] = []
    cats = config.categories(session)
    category = cats.get(data.category) if data.category else None
    if data.category and (category is None or not category.active):
        errors.append({"field": "category", "code": "unknown_category", "message": "分类不存在",
                       "message_en": "Unknown category"})
    elif category is not None and category.kind != data.kind:
        errors.append({"field": "category", "code": "category_kind", "message": "分类与工单类型不符",
                       "message_en": f"Category belongs to kind {category.kind}"})
    if data.kind == "event" and data.category is None:
        errors.append({"field": "category", "code": "required", "message": "事件须选择分类",
                       "message_en": "An event needs a category"})
    loc_unit: UnitRef | None = None
    grid_code = None
    if (data.lon is None) != (data.lat is None):
        errors.append({"field": "lat" if data.lat is None else "lon", "code": "required",
                       "message": "经纬度须同时提供", "message_en": "Give both longitude and latitude"})
    elif data.lon is not None and data.lat is not None:
        found = geo.grids_at(session, [data.lon], [data.lat])[0] if located is _UNLOCATED else located
        if found is None:
            errors.append({"field": "lon", "code": "outside_grids", "message": "该位置不在任何网格内",
                           "message_en": "The point lies in no grid"})
        else:
            grid_code = found[0]
            loc_unit = unit_of(session, found[1])
    elif data.unit:
        loc_unit = unit_of(session, data.unit)
        if loc_unit is None or not loc_unit.is_admin:
            errors.append({"field": "unit", "code": "unknown_unit", "message": "单位代码不存在",
                           "message_en": "Unknown administrative unit"})
            loc_unit = None
    else:
        errors.append({"field": "lon", "code": "required", "message": "须提供位置或所属单位",
                       "message_en": "Give a location (lon/lat) or a unit"})
    if data.kind == "event" and data.lon is None:
        errors.append({"field": "lon", "code": "required", "message": "事件须提供位置",
                       "message_en": "An event needs a location"})
    reporter_id = reporter_phone = None
    if data.reporter is not None:
        reporter_id, reporter_phone, errs = _person_errors("reporter", data.reporter)
        errors += errs
    parties: list[tuple[PartyIn, str | None, str | None]] = []
    for i, p in enumerate(data.parties):
        idn, phone, errs = _person_errors(f"parties[{i}]", p)
        errors += errs
        parties.append((p, idn, phone))
    if data.kind == "dispute" and len(data.parties) < 1:
        errors.append({"field": "parties", "code": "required", "message": "纠纷须登记当事人",
                       "message_en": "A dispute needs its parties"})
    if data.kind == "petition" and not any(p.role == "petitioner" for p in data.parties) and data.reporter is None:
        errors.append({"field": "parties", "code": "required", "message": "信访须登记信访人",
                       "message_en": "A petition needs the petitioner"})
    files: list[tuple[Any, bytes]] = []
    for i, a in enumerate(data.attachments):
        raw, errs = _decode_attachment(i, a)
        errors += errs
        files.append((a, raw))
    if loc_unit is not None and not principal.can_at("item.create", loc_unit.path):
        denied(session, principal, "item.create", object_type="unit", object_id=loc_unit.code,
               scope_path=loc_unit.path)
        errors.append({"field": "lon" if data.lon is not None else "unit", "code": "outside_jurisdiction",
                       "message": "位置不在您的辖区内", "message_en": "Outside your jurisdiction"})
    if errors:
        raise Invalid("invalid item", code="invalid", field=errors[0]["field"], errors=errors)
    assert loc_unit is not None
    owner = _owner_for(session, loc_unit)
    received = data.petition.received_at if data.petition and data.petition.received_at else now
    item = _new_item(
        number=_new_number(data.kind, now), kind=data.kind, status="reported", title=data.title.strip(),
        description=data.description, category_code=data.category, priority=data.priority, source=data.source,
        channel=data.channel, lon=data.lon, lat=data.lat, address=data.address, grid_code=grid_code,
        unit_code=loc_unit.code, scope_path=loc_unit.path, owner_code=owner.code, owner_path=owner.path,
        reporter_name=data.reporter.name if data.reporter else None, reporter_phone=reporter_phone,
        reporter_id_number=reporter_id, created_by=principal.user_id, created_at=now, updated_at=now,
        received_at=received, data=_kind_data(data), sla_state="ok", overdue_steps=0, escalation_level=0,
        extensions=0, whistle=False, supervised=False, version=1,
    )
    _set_step(session, item, now)
    return Prepared(item, owner, parties, files)


def idempotency_mismatch() -> Invalid:
    return Invalid("Idempotency-Key reused with another body", code="idempotency_mismatch", field="Idempotency-Key")


def _replay(session: Session, principal: Principal, key: str, req_hash: str) -> WorkItem | None:
    row = session.execute(select(IdempotencyKey).where(IdempotencyKey.principal == principal.username,
                                                       IdempotencyKey.key == key)).scalar_one_or_none()
    if row is None:
        return None
    if row.request_hash != req_hash:
        raise idempotency_mismatch()
    item = session.get(WorkItem, row.item_id)
    assert item is not None
    return item


def _kind_data(data: ItemCreate) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.dispute:
        out["dispute"] = data.dispute.model_dump()
        out["dispute"]["sessions"] = []
        out["dispute"]["visits"] = []
    if data.petition:
        out["petition"] = data.petition.model_dump(mode="json")
    return out


def flag_repeat_petition(session: Session, item: WorkItem,
                          parties: Sequence[tuple[PartyIn, str | None, str | None]]) -> None:
    """重复信访: the same petitioner (resident ID) on the same matter category within a year."""
    ids = [idn for p, idn, _ in parties if p.role == "petitioner" and idn]
    if item.reporter_id_number:
        ids.append(item.reporter_id_number)
    if not ids:
        return
    since = item.received_at - timedelta(days=365)
    stmt = (select(WorkItem.id).join(Party, Party.item_id == WorkItem.id)
            .where(WorkItem.kind == "petition", Party.id_number.in_(ids), WorkItem.received_at >= since,
                   WorkItem.id < item.id).order_by(WorkItem.received_at).limit(1))
    if item.category_code:
        stmt = stmt.where(WorkItem.category_code == item.category_code)
    prior = session.execute(stmt).scalar_one_or_none()
    if prior is not None:
        item.repeat_of = prior


_DUPLICATE_COLUMNS = "v.nid, w.id, w.lon, w.lat, w.number, w.title, w.status, w.scope_path"
_DUPLICATE_BOX = ("w.category_code = v.cat AND w.lon BETWEEN v.x0 AND v.x1 AND w.lat BETWEEN v.y0 AND v.y1 "
                  "AND w.id < v.nid AND w.status IN ({}) AND w.created_at >= :since").format(
    ", ".join(f"'{st}'" for st in sorted(rules.OPEN_STATES)))  # constants of our own
#: PostgreSQL: the boxes come in as arrays, and LATERAL makes one probe of the (category,
#: lon, lat) index per box (as a plain join PostgreSQL hashes the boxes and scans every
#: recent item instead). Each probe measures its box's items by great-circle distance
#: (the same haversine as ``haversine_m``), keeps those within the radius and returns the
#: nearest ``DUPLICATE_LIMIT``; the same statement writes their links. At a busy spot a
#: box holds hundreds of open reports, and sending them here to be measured, sorted and
#: copied back as links cost more than the rest of the intake.
_HAVERSINE_SQL = ("2 * 6371000.0 * asin(sqrt(power(sin(radians(w.lat - v.lat) / 2), 2) + cos(radians(v.lat)) "
                  "* cos(radians(w.lat)) * power(sin(radians(w.lon - v.lon) / 2), 2)))")
_DUPLICATES_PG = text(
    "WITH v AS (SELECT * FROM unnest(CAST(:nid AS BIGINT[]), CAST(:cat AS TEXT[]), CAST(:x0 AS FLOAT8[]), "
    "CAST(:x1 AS FLOAT8[]), CAST(:y0 AS FLOAT8[]), CAST(:y1 AS FLOAT8[]), CAST(:lon AS FLOAT8[]), "
    "CAST(:lat AS FLOAT8[])) AS v(nid, cat, x0, x1, y0, y1, lon, lat)), "
    "c AS (SELECT v.nid, n.id, n.number, n.title, n.status, n.scope_path, round(n.d::numeric, 1)::float8 AS d "
    "FROM v CROSS JOIN LATERAL (SELECT w.id, w.number, w.title, w.status, w.scope_path, h.d FROM work_items w "
    f"CROSS JOIN LATERAL (SELECT {_HAVERSINE_SQL} AS d) h WHERE {_DUPLICATE_BOX} AND h.d <= :radius "
    f"ORDER BY h.d, w.id LIMIT {DUPLICATE_LIMIT}) n), "
    "linked AS (INSERT INTO item_duplicates (item_id, candidate_id, distance_m, state) "
    "SELECT nid, id, d, 'pending' FROM c) "
    "SELECT nid, id, number, title, status, scope_path, d FROM c ORDER BY nid, d, id"
).bindparams(bindparam("since", type_=WorkItem.__table__.c.created_at.type))


def find_duplicates(session: Session, items: list[WorkItem], now: datetime) -> dict[int, list[dict[str, Any]]]:
    """并单 candidates of new items (one, or a batch of intake), found and linked with one
    query: open items of the same category within the radius and the time window, older
    than the new item (so two reports in one batch link the later to the earlier, as one
    at a time would); the nearest ``DUPLICATE_LIMIT`` of each are linked. Returns, per new
    item, its candidates as the item view shows them, with their ``scope_path``.

    The new items' search boxes are joined to ``work_items``, each box probing the
    (category, lon, lat) index: on PostgreSQL as arrays (``_DUPLICATES_PG``), elsewhere as
    a ``VALUES`` list."""
    located = [it for it in items if it.lon is not None and it.lat is not None and it.category_code]
    if not located:
        return {}
    dlat = DUPLICATE_RADIUS_M / 111_000
    boxes = []
    for it in located:
        assert it.lon is not None and it.lat is not None
        dlon = dlat / max(math.cos(math.radians(it.lat)), 0.1)
        boxes.append((it.id, it.category_code, it.lon - dlon, it.lon + dlon, it.lat - dlat, it.lat + dlat))
    since = now - DUPLICATE_WINDOW
    found: dict[int, list[dict[str, Any]]] = {}
    if session.get_bind().dialect.name == "postgresql":
        # The boxes as one array per column: the statement is the same for any batch size.
        columns = list(zip(*boxes, strict=True))
        rows = fetch(session, _DUPLICATES_PG, {
            "since": since, "radius": DUPLICATE_RADIUS_M, "nid": list(columns[0]), "cat": list(columns[1]),
            "x0": list(columns[2]), "x1": list(columns[3]), "y0": list(columns[4]), "y1": list(columns[5]),
            "lon": [it.lon for it in located], "lat": [it.lat for it in located]})
        for nid, cid, number, title, status, scope_path, d in rows:
            found.setdefault(nid, []).append(_candidate(cid, number, title, status, d, scope_path))
        return found
    # SQLite: a VALUES list, padded to a multiple of PAGE rows so the query text changes
    # little with the batch size (a box that matches nothing: no id is below 0); the
    # candidates are measured, ranked and linked here.
    boxes += [(0, "", 0.0, 0.0, 0.0, 0.0)] * (-len(boxes) % PAGE)
    params: dict[str, Any] = {"since": since}
    for n, box in enumerate(boxes):
        params.update(zip((f"n{n}", f"c{n}", f"x{n}", f"X{n}", f"y{n}", f"Y{n}"), box, strict=True))
    values = ", ".join(f"(:n{n}, :c{n}, :x{n}, :X{n}, :y{n}, :Y{n})" for n in range(len(boxes)))
    sql = (f"WITH v(nid, cat, x0, x1, y0, y1) AS (VALUES {values}) "
           f"SELECT {_DUPLICATE_COLUMNS} FROM v JOIN work_items w ON {_DUPLICATE_BOX}")
    result = session.execute(text(sql).bindparams(bindparam("since", type_=WorkItem.__table__.c.created_at.type)),
                             params)
    by_item = {it.id: it for it in located}
    near: dict[int, list[tuple[float, Any]]] = {}
    for r in result:
        it = by_item[r.nid]
        assert it.lon is not None and it.lat is not None
        d = haversine_m(it.lon, it.lat, r.lon, r.lat)
        if d <= DUPLICATE_RADIUS_M:
            near.setdefault(it.id, []).append((d, r))
    links = []
    for item_id, cands in near.items():
        cands.sort(key=lambda dr: (dr[0], dr[1].id))
        for d, r in cands[:DUPLICATE_LIMIT]:
            links.append({"item_id": item_id, "candidate_id": r.id, "distance_m": round(d, 1), "state": "pending"})
            found.setdefault(item_id, []).append(
                _candidate(r.id, r.number, r.title, r.status, round(d, 1), r.scope_path))
    if links:
        insert_rows(session, DuplicateLink.__table__, links)
    return found


def _candidate(item_id: int, number: str, title: str, status: str, distance_m: float,
               scope_path: str) -> dict[str, Any]:
    """One 并单 candidate as ``find_duplicates`` returns it (both database paths)."""
    return {"item_id": item_id, "number": number, "title": title, "status": status,
            "distance_m": distance_m, "scope_path": scope_path}


# --------------------------------------------------------------------------- deadlines

def _set_step(session: Session, item: WorkItem, now: datetime) -> None:
    """Set the current step and its deadline (时限) after a state change."""
    step = rules.sla_step(item.status)
    item.step = step
    item.sla_state = "ok"
    if step is None:
        item.due_at = None
        return
    if item.kind == "petition":
        if step == "accept":
            item.due_at = config.deadline(session, item.received_at, item.kind, item.category_code, None, "accept")
            return
        if step in ("register", "dispatch", "acknowledge", "handle") and item.handle_due_at is not None:
            item.due_at = item.handle_due_at
            return
    if step == "handle" and item.handle_due_at is not None:
        item.due_at = item.handle_due_at
        return
    item.due_at = config.deadline(session, now, item.kind, item.category_code, item.priority, step)


# --------------------------------------------------------------------------- reads

def readable(principal: Principal, action: str = "item.read") -> Select[Any]:
    """The one scoped statement every item read starts from."""
    return scope(select(WorkItem), principal, action, WorkItem.scope_path)


def get_item(session: Session, principal: Principal, item_id: int, *, action: str = "item.read") -> WorkItem:
    check_action(session, principal, "item.read", object_type="work_item")
    item = session.execute(readable(principal).where(WorkItem.id == item_id)).scalar_one_or_none()
    if item is None:
        other = session.execute(select(WorkItem.scope_path).where(WorkItem.id == item_id)).scalar_one_or_none()
        if other is not None:
            denied(session, principal, action, object_type="work_item", object_id=item_id, scope_path=other)
        raise NotFound("item not found", params={"what": "work_item", "id": str(item_id)})
    return item


@dataclass
class ItemFilter:
    kind: str | None = None
    status: list[str] | None = None
    category: str | None = None
    unit: str | None = None
    overdue: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    mine: bool = False
    supervised: bool | None = None
    repeat: bool | None = None
    backlog: bool | None = None
    open_only: bool = False
    priority: str | None = None


def filtered(session: Session, principal: Principal, f: ItemFilter, *, now: datetime | None = None) -> Select[Any]:
    check_action(session, principal, "item.read", object_type="work_item")
    now = now or utcnow()
    stmt = readable(principal)
    if f.kind:
        stmt = stmt.where(WorkItem.kind == f.kind)
    if f.status:
        stmt = stmt.where(WorkItem.status.in_(f.status))
    if f.open_only:
        stmt = stmt.where(WorkItem.status.in_(rules.OPEN_STATES))
    if f.priority:
        stmt = stmt.where(WorkItem.priority == f.priority)
    if f.category:
        stmt = stmt.where(or_(WorkItem.category_code == f.category,
                              WorkItem.category_code.startswith(f.category + "-", autoescape=True)))
    if f.unit:
        u = units.get(session, f.unit)
        if u is None:
            raise Invalid("unknown unit", code="unknown_unit", field="unit", params={"code": f.unit})
        check_filter(session, principal, "item.read", u.path, object_type="unit", object_id=f.unit)
        stmt = stmt.where(WorkItem.scope_path.startswith(u.path, autoescape=True))
    if f.overdue is True:
        stmt = stmt.where(WorkItem.status.in_(rules.OPEN_STATES),
                          or_(WorkItem.due_at < now, WorkItem.sla_state == "overdue"))
    elif f.overdue is False:
        stmt = stmt.where(or_(WorkItem.due_at.is_(None), WorkItem.due_at >= now))
    if f.since:
        stmt = stmt.where(WorkItem.created_at >= f.since)
    if f.until:
        stmt = stmt.where(WorkItem.created_at < f.until)
    if f.q:
        like = f"%{f.q.strip().lower()}%"
        stmt = stmt.where(or_(func.lower(WorkItem.title).like(like), func.lower(WorkItem.number).like(like)))
    if f.mine and principal.unit_code:
        mine_unit = units.get(session, principal.unit_code)
        if mine_unit is not None and mine_unit.kind == "department":
            stmt = stmt.where(WorkItem.id.in_(select(Assignment.item_id).where(
                Assignment.department_code == principal.unit_code,
                Assignment.state.not_in(rules.INACTIVE_ASSIGNMENTS))))
        elif mine_unit is not None:
            stmt = stmt.where(WorkItem.owner_code == principal.unit_code)
    if f.supervised is not None:
        stmt = stmt.where(WorkItem.supervised.is_(f.supervised))
    if f.repeat is True:
        stmt = stmt.where(WorkItem.repeat_of.is_not(None))
    if f.backlog is True:  # 积案: petitions open past their deadline or for over 90 days
        stmt = stmt.where(WorkItem.kind == "petition", WorkItem.status.in_(rules.OPEN_STATES),
                          or_(WorkItem.handle_due_at < now, WorkItem.received_at < now - timedelta(days=90)))
    return stmt


def count(session: Session, stmt: Select[Any]) -> int:
    return int(session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one())


def inbox_order(stmt: Select[Any]) -> Select[Any]:
    """Overdue first, then by due time, then newest."""
    return stmt.order_by(WorkItem.due_at.is_(None), WorkItem.due_at, WorkItem.id.desc())


def timeline(session: Session, principal: Principal, item_id: int) -> list[TimelineEntry]:
    item = get_item(session, principal, item_id)
    return list(session.execute(select(TimelineEntry).where(TimelineEntry.item_id == item.id)
                                .order_by(TimelineEntry.at, TimelineEntry.id)).scalars())


def parties_of(session: Session, item_id: int) -> list[Party]:
    return list(session.execute(select(Party).where(Party.item_id == item_id).order_by(Party.id)).scalars())


def assignments_of(session: Session, item_id: int) -> list[Assignment]:
    return list(session.execute(select(Assignment).where(Assignment.item_id == item_id)
                                .order_by(Assignment.id)).scalars())


def duplicates_of(session: Session, principal: Principal, item: WorkItem) -> list[dict[str, Any]]:
    stmt = (select(DuplicateLink, WorkItem.number, WorkItem.title, WorkItem.status)
            .join(WorkItem, WorkItem.id == DuplicateLink.candidate_id)
            .where(DuplicateLink.item_id == item.id, DuplicateLink.state == "pending"))
    rows = session.execute(scope(stmt, principal, "item.read", WorkItem.scope_path)).all()
    return [{"item_id": d.candidate_id, "number": n, "title": t, "status": s, "distance_m": d.distance_m}
            for d, n, t, s in rows]


def attachments_of(session: Session, item_id: int) -> list[dict[str, Any]]:
    rows = session.execute(select(Attachment.id, Attachment.filename, Attachment.content_type, Attachment.size,
                                  Attachment.uploaded_at).where(Attachment.item_id == item_id)
                           .order_by(Attachment.id)).all()
    return [{"id": r.id, "filename": r.filename, "content_type": r.content_type, "size": r.size,
             "uploaded_at": r.uploaded_at} for r in rows]


def get_attachment(session: Session, principal: Principal, item_id: int, attachment_id: int) -> Attachment:
    item = get_item(session, principal, item_id)
    att = session.get(Attachment, attachment_id)
    if att is None or att.item_id != item.id:
        raise NotFound("attachment not found", params={"what": "attachment", "id": str(attachment_id)})
    return att


def add_attachment(session: Session, principal: Principal, item_id: int, *, filename: str, content_type: str,
                   raw: bytes, if_match: str | None) -> Attachment:
    if not (principal.can("item.create") or principal.can("item.handle") or principal.can("item.dispatch")):
        check_action(session, principal, "item.handle", object_type="work_item")
    item = get_item(session, principal, item_id)
    _check_etag(item, if_match)
    errors = check_attachment("file", content_type, raw)
    if errors:
        raise Invalid("bad attachment", code=errors[0]["code"], field=errors[0]["field"], errors=errors)
    att = Attachment(item_id=item.id, filename=filename[:200] or "file", content_type=content_type, size=len(raw),
                     sha256=hashlib.sha256(raw).hexdigest(), content=raw, uploaded_by=principal.username)
    session.add(att)
    item.updated_at = utcnow()
    session.flush()
    _timeline(session, principal, item, "attach", before=item.status, data={"filename": att.filename})
    _audit(session, principal, item, "attach", {"filename": att.filename, "size": att.size})
    return att


# --------------------------------------------------------------------------- actions

def _check_etag(item: WorkItem, if_match: str | None) -> None:
    if not if_match:
        raise PreconditionRequired("If-Match header required", field="If-Match")
    tags = [t.strip() for t in if_match.split(",")]
    if "*" not in tags and etag(item) not in tags and etag(item).strip('"') not in tags:
        raise PreconditionFailed("the item changed since you read it", code="stale_etag", field="If-Match")


def _assignment_for(session: Session, principal: Principal, item: WorkItem, body: ActionIn) -> Assignment:
    rows = assignments_of(session, item.id)
    active = [a for a in rows if a.state not in rules.INACTIVE_ASSIGNMENTS]
    mine = [a for a in active if a.department_code == principal.unit_code]
    if not mine and (principal.is_system or principal.role == "admin") and body.departments:
        mine = [a for a in active if a.department_code in body.departments]
    if not mine:
        audit.record_detached(session, principal, "item.act", object_type="work_item", object_id=item.id,
                              result="denied", scope_path=item.scope_path, detail={"reason": "not_assigned"})
        raise Forbidden("your unit is not assigned to this item", code="not_assigned")
    return mine[0]


def act(session: Session, principal: Principal, item_id: int, action: str, body: ActionIn, *,
        if_match: str | None, now: datetime | None = None) -> WorkItem:
    """Run one lifecycle action on an item. The transition table in ``rules`` decides
    whether it may happen now (409 otherwise); roles and jurisdiction decide who."""
    if action not in rules.TRANSITIONS:
        raise NotFound("unknown action", code="unknown_action", field="action", params={"action": action})
    now = now or utcnow()
    permission = rules.PERMISSION[action]
    check_action(session, principal, permission, object_type="work_item")
    item = get_item(session, principal, item_id, action=permission)
    _check_etag(item, if_match)
    reason = rules.why_not(action, item.status)
    if reason:
        allowed_in = sorted(rules.TRANSITIONS[action].sources)
        raise Conflict(reason, code="transition_not_allowed", params={
            "action": action, "status": item.status, "allowed": ", ".join(allowed_in),
            "action_zh": rules.ACTION_LABELS.get(action, action),
            "status_zh": rules.STATE_LABELS.get(item.status, item.status),
            "allowed_zh": "、".join(rules.STATE_LABELS.get(x, x) for x in allowed_in)})
    t = rules.TRANSITIONS[action]
    note = (body.note or "").strip() or None
    if t.needs_reason and not note:
        raise Invalid("a reason is required", code="reason_required", field="note")
    assignment = None
    if action in rules.DEPARTMENT_ACTIONS:
        assignment = _assignment_for(session, principal, item, body)
    elif not principal.can_at(permission, item.scope_path if action in rules.LOCATION_ACTIONS else item.owner_path):
        audit.record_detached(session, principal, f"item.{action}", object_type="work_item", object_id=item.id,
                              result="denied", scope_path=item.scope_path, detail={"reason": "not_owner"})
        raise Forbidden("only the owning centre may do this", code="not_owner")
    before = item.status
    detail: dict[str, Any] = {"from": before}
    handler = _HANDLERS[action]
    extra = handler(session, principal, item, body, assignment, now)
    if extra:
        detail.update(extra)
    if t.target is not None and action not in ("verify",):
        item.status = t.target
    if item.status != before:
        _set_step(session, item, now)
    item.updated_at = now
    session.flush()
    detail["to"] = item.status
    _timeline(session, principal, item, action, before=before, note=note, data=extra or {})
    _audit(session, principal, item, action, detail)
    return item


Handler = Any


def _h_accept(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any, now: datetime) -> dict[str, Any]:
    item.accepted_at = now
    if item.kind == "petition":
        item.handle_due_at = config.deadline(session, now, "petition", item.category_code, None, "handle")
    return {}


def _h_reject(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any, now: datetime) -> dict[str, Any]:
    item.closed_at = now
    return {}


def _h_register(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
                now: datetime) -> dict[str, Any]:
    return {}


def _dispatch(session: Session, p: Principal, item: WorkItem, body: ActionIn, now: datetime,
              mode: str) -> dict[str, Any]:
    codes = list(dict.fromkeys(c.strip() for c in body.departments if c.strip()))
    if not codes:
        raise Invalid("name at least one department", code="departments_required", field="departments")
    if mode == "whistle" and len(codes) < 2:
        raise Invalid("a whistle summons at least two departments", code="whistle_needs_two", field="departments")
    found = units.get_many(session, codes)
    bad = [c for c in codes if c not in found or found[c].kind != "department"]
    if bad:
        raise Invalid("unknown departments", code="unknown_department", field="departments",
                      params={"codes": ", ".join(bad)})
    for c in codes:
        dept = found[c]
        serves = dept.path.rsplit("/", 2)[0] + "/"  # the department's administrative unit path
        if not item.scope_path.startswith(serves):
            raise Invalid("department does not serve this area", code="department_out_of_area",
                          field="departments", params={"codes": c})
    existing = {x.department_code: x for x in assignments_of(session, item.id)}
    ack_due = config.deadline(session, now, item.kind, item.category_code, item.priority, "acknowledge")
    for c in codes:
        row = existing.get(c)
        if row is None:
            session.add(Assignment(item_id=item.id, department_code=c, mode=mode, state="assigned", assigned_at=now,
                                   ack_due_at=ack_due))
        elif row.state in ("returned", "reported", "done"):
            row.state, row.mode, row.assigned_at, row.ack_due_at = "assigned", mode, now, ack_due
            row.acknowledged_at = row.reported_at = None
            row.ack_overdue = False  # a new report-in deadline: the SLA tick may flag it again
        dept = found[c]
        notify(session, unit_code=c, scope_path=dept.path, item_id=item.id, kind="whistle" if mode == "whistle"
               else "dispatch", message=f"{'吹哨报到' if mode == 'whistle' else '派遣'}：{item.number} {item.title}")
    if mode == "whistle":
        item.whistle = True
    if item.handle_due_at is None:
        item.handle_due_at = config.deadline(session, now, item.kind, item.category_code, item.priority, "handle")
    session.flush()
    if item.status == "registered":
        item.status = "dispatched"
    return {"departments": codes, "mode": mode}


def _h_dispatch(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
                now: datetime) -> dict[str, Any]:
    return _dispatch(session, p, item, body, now, "dispatch")


def _h_whistle(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
               now: datetime) -> dict[str, Any]:
    return _dispatch(session, p, item, body, now, "whistle")


def _h_acknowledge(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Assignment,
                   now: datetime) -> dict[str, Any]:
    if a.state != "assigned":
        raise Conflict("already acknowledged", code="already_acknowledged")
    a.state, a.acknowledged_at = "acknowledged", now
    return {"department": a.department_code, "late": bool(a.ack_due_at and now > a.ack_due_at)}


def _require_working_with_note(a: Assignment, body: ActionIn) -> None:
    """Handling and reporting back need the department to have reported in, and a note."""
    if a.state != "acknowledged":
        raise Conflict("acknowledge first", code="acknowledge_first")
    if not (body.note or "").strip():
        raise Invalid("describe what was done", code="reason_required", field="note")


def _h_handle(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Assignment,
              now: datetime) -> dict[str, Any]:
    _require_working_with_note(a, body)
    return {"department": a.department_code}


def _h_feedback(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Assignment,
                now: datetime) -> dict[str, Any]:
    _require_working_with_note(a, body)
    a.state, a.reported_at, a.report = "reported", now, body.note
    session.flush()
    item.status = rules.next_state_after_feedback([x.state for x in assignments_of(session, item.id)])
    if item.status == "feedback":
        notify(session, unit_code=item.owner_code, scope_path=item.owner_path, item_id=item.id, kind="feedback",
               message=f"待核查：{item.number} {item.title}")
    return {"department": a.department_code}


def _h_return(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Assignment,
              now: datetime) -> dict[str, Any]:
    a.state = "returned"
    session.flush()
    item.status = rules.next_state_after_return([x.state for x in assignments_of(session, item.id)])
    notify(session, unit_code=item.owner_code, scope_path=item.owner_path, item_id=item.id, kind="returned",
           message=f"退回：{item.number} {item.title}")
    return {"department": a.department_code}


def _h_verify(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
              now: datetime) -> dict[str, Any]:
    if body.passed is None:
        raise Invalid("say whether the handling passed", code="required", field="passed")
    if body.passed:
        item.status = "verified"
    else:
        if not (body.note or "").strip():
            raise Invalid("say why the handling failed", code="reason_required", field="note")
        for x in assignments_of(session, item.id):
            if x.state == "reported":
                x.state, x.reported_at = "acknowledged", None
        item.status = "handling"
    return {"passed": body.passed}


def _h_close(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
             now: datetime) -> dict[str, Any]:
    if item.kind == "petition" and item.replied_at is None:
        raise Conflict("a petition closes only after its reply is recorded", code="reply_required")
    item.closed_at = now
    return {}


def _h_rate(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
            now: datetime) -> dict[str, Any]:
    if body.rating is None:
        raise Invalid("give a rating from 1 to 5", code="required", field="rating")
    item.rating = body.rating
    return {"rating": body.rating}


def _h_reopen(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
              now: datetime) -> dict[str, Any]:
    if not rules.can_reopen(item.status, item.rating):
        raise Conflict("only a poorly rated or closed item can be reopened", code="reopen_not_allowed")
    prev_rating = item.rating
    item.closed_at = None
    item.rating = None
    item.handle_due_at = None
    for x in assignments_of(session, item.id):  # the old round is over; dispatch afresh
        if x.state not in rules.INACTIVE_ASSIGNMENTS:
            x.state = "done"
    return {"previous_rating": prev_rating}


def _h_extend(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
              now: datetime) -> dict[str, Any]:
    if body.days is None:
        raise Invalid("give the number of days", code="required", field="days")
    limit = rules.MAX_EXTENSIONS.get(item.kind, 1)
    if item.extensions >= limit:
        raise Conflict("no more extensions allowed", code="extension_limit", params={"limit": limit})
    if item.kind == "petition" and body.days > rules.PETITION_MAX_EXTENSION_DAYS:
        raise Invalid("a petition may be extended by at most 30 days", code="extension_too_long", field="days")
    cal = config.calendar(session)
    # Before dispatch there is no handling deadline yet: extend the one dispatching now would
    # set, never the (much shorter) deadline of the current step.
    base = item.handle_due_at or config.deadline(session, now, item.kind, item.category_code, item.priority,
                                                 "handle") or item.due_at or now
    item.handle_due_at = cal.add(base, Duration(body.days, "days"))
    if item.step in ("handle", "acknowledge", "dispatch", "register") or item.kind == "petition":
        item.due_at = item.handle_due_at
        item.sla_state = "ok"
    item.extensions += 1
    return {"days": body.days, "handle_due_at": item.handle_due_at.isoformat()}


def escalate(session: Session, principal: Principal, item: WorkItem, now: datetime, *, reason: str,
             unit_cache: dict[str, Unit] | None = None) -> Unit:
    """Move the item's ownership one administrative level up 上报上级. Batch callers pass
    ``unit_cache`` (code -> Unit) so a tick over many items looks units up once."""
    def unit(code: str) -> Unit | None:
        if unit_cache is None:
            return units.get(session, code)
        if code not in unit_cache:
            found = units.get(session, code)
            if found is not None:
                unit_cache[code] = found
        return unit_cache.get(code)

    owner = unit(item.owner_code)
    assert owner is not None
    parent = unit(owner.parent_code) if owner.parent_code else None
    if parent is None:
        raise Conflict("already owned by the top level", code="top_level")
    item.owner_code, item.owner_path = parent.code, parent.path
    item.escalation_level += 1
    step = item.step
    if item.kind == "petition":
        # Statutory limits do not restart for the upper level: the item stays overdue
        # (and the tick will not escalate it again for the same lapse).
        if item.due_at is not None and item.due_at < now:
            item.sla_state = "overdue"
    else:
        # The upper level gets the step's time afresh to act on it.
        if step:
            item.due_at = config.deadline(session, now, item.kind, item.category_code, item.priority,
                                          step) or item.due_at
        item.sla_state = "ok"
    notify(session, unit_code=parent.code, scope_path=parent.path, item_id=item.id, kind="escalated",
           message=f"上报上级：{item.number} {item.title}（{reason}）")
    return parent


def _h_escalate(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
                now: datetime) -> dict[str, Any]:
    old = item.owner_code
    parent = escalate(session, p, item, now, reason=body.note or "")
    return {"from_owner": old, "to_owner": parent.code}


def _h_reply(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
             now: datetime) -> dict[str, Any]:
    text = (body.reply or body.note or "").strip()
    if not text:
        raise Invalid("write the reply", code="required", field="reply")
    item.reply_text, item.replied_at = text, now
    return {"replied": True}


def _h_merge(session: Session, p: Principal, item: WorkItem, body: ActionIn, a: Any,
             now: datetime) -> dict[str, Any]:
    if body.target is None:
        raise Invalid("name the item to merge into", code="required", field="target")
    if body.target == item.id:
        raise Invalid("an item cannot be merged into itself", code="merge_self", field="target")
    target = get_item(session, p, body.target)
    if target.kind != item.kind or target.status not in rules.OPEN_STATES:
        raise Conflict("merge only into an open item of the same kind", code="merge_target")
    item.merged_into = target.id
    item.closed_at = now
    for link in session.execute(select(DuplicateLink).where(
            or_(and_(DuplicateLink.item_id == item.id, DuplicateLink.candidate_id == target.id),
                and_(DuplicateLink.item_id == target.id, DuplicateLink.candidate_id == item.id)))).scalars():
        link.state = "merged"
    target.updated_at = now
    session.add(TimelineEntry(item_id=target.id, at=now, actor=p.username, role=p.role, unit_code=p.unit_code,
                              action="merged_in", from_status=target.status, to_status=target.status,
                              note=f"并入 {item.number}", data={"item": item.id}))
    return {"target": target.id}


_HANDLERS: dict[str, Handler] = {
    "accept": _h_accept, "reject": _h_reject, "register": _h_register, "dispatch": _h_dispatch,
    "whistle": _h_whistle, "acknowledge": _h_acknowledge, "handle": _h_handle, "feedback": _h_feedback,
    "return": _h_return, "verify": _h_verify, "close": _h_close, "rate": _h_rate, "reopen": _h_reopen,
    "extend": _h_extend, "escalate": _h_escalate, "reply": _h_reply, "merge": _h_merge,
}
assert set(_HANDLERS) == set(rules.ACTIONS)


def dismiss_duplicate(session: Session, principal: Principal, item_id: int, candidate_id: int) -> None:
    check_action(session, principal, "item.dispatch", object_type="work_item")
    item = get_item(session, principal, item_id)
    link = session.execute(select(DuplicateLink).where(DuplicateLink.item_id == item.id,
                                                       DuplicateLink.candidate_id == candidate_id)
                           ).scalar_one_or_none()
    if link is None:
        raise NotFound("no such duplicate link", params={"what": "duplicate", "id": str(candidate_id)})
    link.state = "dismissed"
    item.updated_at = utcnow()
    _timeline(session, principal, item, "dismiss_duplicate", before=item.status, data={"candidate": candidate_id})
    _audit(session, principal, item, "dismiss_duplicate", {"candidate": candidate_id})


# --------------------------------------------------------------------------- supervision 督办

def supervise(session: Session, principal: Principal, item_id: int, *, note: str, days: int,
              now: datetime | None = None) -> Supervision:
    now = now or utcnow()
    check_action(session, principal, "item.supervise", object_type="work_item")
    item = get_item(session, principal, item_id, action="item.supervise")
    check_scope(session, principal, "item.supervise", item.scope_path, object_type="work_item", object_id=item.id)
    due = config.calendar(session).add(now, Duration(days, "working_days"))
    sup = Supervision(item_id=item.id, issued_by=principal.username, unit_code=principal.unit_code,
                      scope_path=item.scope_path, note=note, issued_at=now, due_at=due)
    session.add(sup)
    item.supervised = True
    item.updated_at = now
    session.flush()
    notify(session, unit_code=item.owner_code, scope_path=item.owner_path, item_id=item.id, kind="supervision",
           message=f"督办：{item.number} {item.title}（{note}）")
    _timeline(session, principal, item, "supervise", before=item.status, note=note, data={"due_at": due.isoformat()})
    _audit(session, principal, item, "supervise", {"supervision": sup.id, "days": days})
    return sup


def resolve_supervision(session: Session, principal: Principal, item_id: int, supervision_id: int) -> Supervision:
    check_action(session, principal, "item.supervise", object_type="work_item")
    item = get_item(session, principal, item_id, action="item.supervise")
    check_scope(session, principal, "item.supervise", item.scope_path, object_type="work_item", object_id=item.id)
    sup = session.get(Supervision, supervision_id)
    if sup is None or sup.item_id != item.id:
        raise NotFound("supervision not found", params={"what": "supervision", "id": str(supervision_id)})
    if sup.resolved_at is not None:
        raise Conflict("already resolved", code="already_resolved")
    now = utcnow()
    sup.resolved_at, sup.state = now, "resolved"
    session.flush()
    still = session.execute(select(func.count()).select_from(Supervision).where(
        Supervision.item_id == item.id, Supervision.resolved_at.is_(None))).scalar_one()
    item.supervised = still > 0
    item.updated_at = now
    _timeline(session, principal, item, "resolve_supervision", before=item.status, data={"supervision": sup.id})
    _audit(session, principal, item, "resolve_supervision", {"supervision": sup.id})
    return sup


def supervisions_of(session: Session, item_id: int) -> list[Supervision]:
    return list(session.execute(select(Supervision).where(Supervision.item_id == item_id)
                                .order_by(Supervision.id)).scalars())


def category_name(session: Session, code: str | None) -> str | None:
    if not code:
        return None
    c: Category | None = config.categories(session).get(code)
    return c.name if c else None


# --------------------------------------------------------------------------- mediation 调解

MEDIATION_RECORDS = ("session", "agreement", "visit")


def record_mediation(session: Session, principal: Principal, item_id: int, *, record: str, note: str,
                     outcome: str | None, satisfied: bool | None, at: datetime | None,
                     if_match: str | None) -> WorkItem:
    """Dispute mediation 调解: a mediation session with its outcome, the agreement
    调解协议, or a follow-up visit 回访. Kept on the dispute and in the timeline."""
    check_action(session, principal, "item.handle", object_type="work_item")
    item = get_item(session, principal, item_id, action="item.handle")
    _check_etag(item, if_match)
    if item.kind != "dispute":
        raise Conflict("mediation records belong to disputes", code="not_a_dispute")
    if item.status not in ("dispatched", "handling", "feedback", "verified", "closed", "rated"):
        raise Conflict(f"cannot record mediation while the dispute is {item.status}", code="transition_not_allowed")
    if record == "visit" and item.status not in ("closed", "rated", "verified", "feedback"):
        raise Conflict("follow-up visits come after handling", code="transition_not_allowed")
    now = utcnow()
    entry = {"at": (at or now).isoformat(), "by": principal.username, "note": note}
    data = dict(item.data or {})
    dispute = dict(data.get("dispute") or {})
    if record == "session":
        if outcome not in ("agreed", "partial", "failed", "adjourned"):
            raise Invalid("outcome must be agreed, partial, failed or adjourned", code="invalid", field="outcome")
        entry["outcome"] = outcome
        dispute["sessions"] = [*dispute.get("sessions", []), entry]
    elif record == "agreement":
        dispute["agreement"] = entry
        dispute["resolved"] = True
    else:
        entry["satisfied"] = bool(satisfied)
        dispute["visits"] = [*dispute.get("visits", []), entry]
    data["dispute"] = dispute
    item.data = data
    item.updated_at = now
    session.flush()
    _timeline(session, principal, item, f"mediation_{record}", before=item.status, note=note,
              data={k: v for k, v in entry.items() if k not in ("note",)})
    _audit(session, principal, item, f"mediation_{record}", {"outcome": outcome})
    return item
