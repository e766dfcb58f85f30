"""Open311 use cases 开放311接口: services, request intake, reads, updates, partner keys.

An adapter with no logic of its own: a request becomes a 12345 hotline work item through
``items.service.create_item`` (numbering, routing 小事不出村, deadlines 时限, timeline, audit),
reads start from ``items.service.filtered`` (the one jurisdiction filter 辖区过滤), and
statuses and updates are read off the item's lifecycle and timeline.

Principals: a partner acts as ``open311:<partner>`` and public reads as ``open311:public``,
each granted only the requested jurisdiction's subtree in the least-privileged role that
may create and read items (``PARTNER_ROLE``); this module calls nothing else with them.

Only items that came in through Open311 or the citizens' page are public here (they have an
``open311_requests`` row): a phone caller never agreed to publication. Public output never
carries a reporter's name, phone or e-mail; descriptions are scrubbed of ID and mobile
numbers and addresses are masked like everywhere else (``kit.pii``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from shiyu.domains.geo import service as geo
from shiyu.domains.items import config
from shiyu.domains.items import service as items
from shiyu.domains.items.models import Assignment, TimelineEntry, WorkItem
from shiyu.domains.items.rules import INACTIVE_ASSIGNMENTS, OPEN_STATES
from shiyu.domains.items.schemas import ItemCreate, PersonIn
from shiyu.domains.open311 import ratelimit, rules
from shiyu.domains.open311.models import ApiKey, Open311Request
from shiyu.domains.open311.rules import Open311Error, RequestIn, ServiceDef, bad
from shiyu.kit.errors import Conflict, DomainError, Invalid, NotFound
from shiyu.kit.pii import PiiError, mask_address, scrub_text, validate_mobile
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action
from shiyu.platform.authz.principal import GrantScope, Principal
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit

#: The least-privileged role that may create and read items (a grid worker's). The partner's
#: principal is granted it over the requested jurisdiction only.
PARTNER_ROLE = "grid_worker"
#: Units a jurisdiction_id may name.
JURISDICTION_KINDS = ("city", "district")
KEY_PREFIX = "o311_"
PARTNER_NAME = re.compile(r"^\w[\w .-]{0,47}$")
#: Reporter name when only a phone number is given (the items domain needs a name).
ANONYMOUS = "匿名市民"


@dataclass(frozen=True)
class Partner:
    """Who files a request: a partner holding an API key, or the citizens' page."""

    name: str
    channel: str
    source: str
    key: ApiKey | None = None


#: The citizens' own page 市民网页: an internal partner without a key, limited per address.
CITIZEN_WEB = Partner(name="citizen-web", channel="市民网页", source="citizen")
RESERVED_PARTNERS = frozenset({CITIZEN_WEB.name, "public"})


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    name_en: str
    group: str
    definition: ServiceDef


@dataclass(frozen=True)
class Submitted:
    item: WorkItem
    token: str
    notice: str


# --------------------------------------------------------------------------- helpers


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_secret(nbytes: int) -> str:
    """Random text in lower-case base32: no 0, 1, 8 or 9, so it never reads as a mobile number
    or resident ID to a person or to the personal-data scanners."""
    return base64.b32encode(secrets.token_bytes(nbytes)).decode("ascii").rstrip("=").lower()


def w3c(value: datetime | None) -> str | None:
    """A W3C datetime with the city's UTC offset: ``2026-11-29T09:30:00+08:00``."""
    if value is None:
        return None
    return value.astimezone(config.LOCAL_TZ).isoformat(timespec="seconds")


def _principal(name: str, unit: Unit, request_id: str | None) -> Principal:
    return Principal(user_id=None, username=name[:64], role=PARTNER_ROLE, unit_code=unit.code,
                     grants=(GrantScope(PARTNER_ROLE, unit.code, unit.path),), request_id=request_id)


@functools.cache
def definitions() -> tuple[ServiceDef, dict[str, ServiceDef]]:
    text = resources.files("shiyu.domains.open311").joinpath("services.json").read_text("utf-8")
    return rules.parse_definitions(json.loads(text))


def default_notice() -> str:
    return definitions()[0].notice


# --------------------------------------------------------------------------- jurisdiction and services


def jurisdiction(session: Session, code: str | None) -> Unit:
    """The city or district a ``jurisdiction_id`` names (404 otherwise); without one, the
    only city there is (400 when the installation serves several)."""
    if not code:
        cities = session.execute(select(Unit).where(Unit.kind == "city").order_by(Unit.code).limit(2)).scalars().all()
        if len(cities) != 1:
            raise bad("jurisdiction_required")
        return cities[0]
    unit = units.get(session, code) if len(code) <= 32 else None
    if unit is None or unit.kind not in JURISDICTION_KINDS:
        raise Open311Error(404, "jurisdiction_unknown", id=code)
    return unit


def services(session: Session) -> list[Service]:
    """The public part of the taxonomy 公开分类: active, public 12345 hotline categories
    (not the roots), each with its definition."""
    cats = config.categories(session)
    default, own = definitions()
    out = []
    for c in sorted(cats.values(), key=lambda c: c.code):
        if c.kind == "hotline" and c.public and c.active and c.parent_code:
            parent = cats.get(c.parent_code)
            out.append(Service(c.code, c.name, c.name_en or "", parent.name if parent else "",
                               own.get(c.code, default)))
    return out


def service(session: Session, code: str) -> Service:
    for s in services(session):
        if s.code == code:
            return s
    raise Open311Error(404, "service_unknown", code=code)


def discovery(url: str) -> dict[str, Any]:
    return {
        "changeset": rules.CHANGESET,
        "contact": "12345 政务服务便民热线 / the 12345 citizen service hotline",
        "key_service": "API keys are issued to partners by the administrators (shiyu open311 keys add).",
        "endpoints": [{
            "specification": rules.SPECIFICATION,
            "url": url,
            "changeset": rules.CHANGESET,
            "type": "production",
            "formats": [m.split(";")[0] for m in rules.FORMATS.values()],
        }],
    }


def service_list(session: Session) -> list[dict[str, Any]]:
    return [{"service_code": s.code, "service_name": s.name, "description": s.name_en,
             "metadata": bool(s.definition.attributes), "type": "realtime", "keywords": s.definition.keywords,
             "group": s.group} for s in services(session)]


def service_definition(session: Session, code: str) -> dict[str, Any]:
    s = service(session, code)
    return {"service_code": s.code, "attributes": [
        {"variable": a.variable, "code": a.code, "datatype": a.datatype, "required": a.required,
         "datatype_description": a.datatype_description or None, "order": a.order, "description": a.description,
         "values": [{"key": k, "name": n} for k, n in a.values]}
        for a in s.definition.attributes]}


# --------------------------------------------------------------------------- keys and limits


def authenticate(session: Session, api_key: str | None, *, client: str, request_id: str | None) -> ApiKey:
    """The partner's key (403 when missing, unknown or revoked; each refusal audited, and a
    client that keeps guessing gets 429)."""
    if not api_key or not api_key.strip():
        _key_refused(session, "missing", client, request_id)
        raise Open311Error(403, "api_key_missing")
    value = api_key.strip()
    row = None
    if len(value) <= 200:
        row = session.execute(select(ApiKey).where(ApiKey.key_hash == hash_secret(value))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        _key_refused(session, "revoked" if row is not None else "unknown", client, request_id,
                     partner=row.partner if row is not None else None, key_id=row.id if row is not None else None)
        raise Open311Error(403, "api_key_invalid")
    return row


def _key_refused(session: Session, reason: str, client: str, request_id: str | None, *, partner: str | None = None,
                 key_id: int | None = None) -> None:
    wait = ratelimit.BAD_KEY.hit(client)
    if wait is not None:
        if ratelimit.BAD_KEY.first_refusal(client):
            audit.record_detached(session, None, "open311.api_key", object_type="open311_api_key", object_id=key_id,
                                  result="denied", actor="open311", request_id=request_id,
                                  detail={"reason": "flood", "partner": partner})
        raise _too_many(wait)
    audit.record_detached(session, None, "open311.api_key", object_type="open311_api_key", object_id=key_id,
                          result="denied", actor="open311", request_id=request_id,
                          detail={"reason": reason, "partner": partner})


def _too_many(wait: int) -> Open311Error:
    err = Open311Error(429, "rate_limited", seconds=wait)
    err.headers["Retry-After"] = str(wait)
    return err


def throttle(session: Session, limiter: ratelimit.RateLimiter, key: str, *, partner: Partner,
             request_id: str | None) -> None:
    """429 with Retry-After once ``key`` has used up its bucket (audited once a minute)."""
    wait = limiter.hit(key)
    if wait is None:
        return
    if limiter.first_refusal(key):
        audit.record_detached(session, None, "open311.rate_limited", object_type="open311_api_key",
                              object_id=partner.key.id if partner.key else None, result="denied",
                              actor=f"open311:{partner.name}", request_id=request_id,
                              detail={"partner": partner.name, "retry_after": wait})
    raise _too_many(wait)


def refused(session: Session, partner: Partner, exc: DomainError, *, request_id: str | None) -> None:
    """Audit a request refused from a partner with a valid key (kept although nothing is written)."""
    audit.record_detached(session, None, "open311.request.create", object_type="open311_api_key",
                          object_id=partner.key.id if partner.key else None, result="rejected",
                          actor=f"open311:{partner.name}", request_id=request_id,
                          detail={"partner": partner.name, "status": exc.status, "code": exc.code})


# --------------------------------------------------------------------------- intake


def _title(s: Service, description: str) -> str:
    first = " ".join(description.split())[:60]
    return f"{s.name}：{first}"[:200] if first else s.name


def _as_open311(exc: DomainError) -> Open311Error:
    """An items-domain refusal in the spec's terms (400 unless it is 403/404)."""
    if isinstance(exc, Open311Error):
        return exc
    first = exc.errors[0] if exc.errors else {}
    en = str(first.get("message_en") or first.get("message") or exc.detail or exc.code)
    zh = str(first.get("message") or en)
    status = exc.status if exc.status in (403, 404) else 400
    return Open311Error(status, "invalid", detail=en, detail_zh=zh)


def submit(session: Session, *, partner: Partner, unit: Unit, data: RequestIn, request_id: str | None,
           now: datetime | None = None) -> Submitted:
    """File a service request 提交服务请求 as a hotline work item located in ``unit``'s
    jurisdiction. Everything is checked before anything is written."""
    now = now or utcnow()
    s = service(session, data.service_code)
    values = rules.check_attributes(s.code, s.definition, data.attributes)
    principal = _principal(f"open311:{partner.name}", unit, request_id)
    lon = lat = None
    if data.lat is not None and data.long is not None:
        found = geo.locate_point(session, data.long, data.lat)
        if found is None or not found[1].startswith(unit.path):
            raise bad("location_outside", id=unit.code)
        lon, lat = data.long, data.lat
    phone = None
    if data.phone:
        try:
            phone = validate_mobile(data.phone)
        except PiiError:
            raise bad("phone_invalid") from None
    name = rules.reporter_name(data.first_name, data.last_name)
    # The description is public: ID and mobile numbers typed into it are masked before it is
    # stored (the reporter's own number belongs in ``phone``, which is kept and never shown).
    description = scrub_text(data.description)
    try:
        reporter = PersonIn(name=name or ANONYMOUS, phone=phone) if (name or phone) else None
        body = ItemCreate(kind="hotline", title=_title(s, description), description=description,
                          category=s.code, lon=lon, lat=lat, address=data.address_string,
                          unit=None if lon is not None else unit.code, source=partner.source,  # type: ignore[arg-type]
                          channel=partner.channel, reporter=reporter)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise bad("invalid", detail=detail, detail_zh=detail) from None
    token = new_secret(15)
    token_hash = hash_secret(token)
    try:
        created = items.create_item(session, principal, body, idempotency_key=f"open311:{token_hash[:48]}", now=now)
    except DomainError as exc:
        raise _as_open311(exc) from None
    item = created.item
    session.add(Open311Request(item_id=item.id, token_hash=token_hash, partner=partner.name,
                               api_key_id=partner.key.id if partner.key else None, jurisdiction_code=unit.code,
                               scope_path=item.scope_path, service_code=s.code, attributes=values,
                               media_url=data.media_url, email=data.email, requested_at=now))
    if partner.key is not None:
        partner.key.last_used_at = now
        partner.key.use_count = (partner.key.use_count or 0) + 1
    session.flush()
    audit.record(session, principal, "open311.request.create", object_type="work_item", object_id=item.id,
                 scope_path=item.scope_path,
                 detail={"partner": partner.name, "number": item.number, "service_code": s.code,
                         "jurisdiction": unit.code, "attributes": sorted(values), "located": lon is not None})
    return Submitted(item, token, s.definition.notice or default_notice())


# --------------------------------------------------------------------------- reads


def _readable(session: Session, unit: Unit, request_id: str | None) -> Select[Any]:
    """Public Open311 requests inside ``unit``: (WorkItem, Open311Request) rows, starting from
    the items domain's scoped statement."""
    principal = _principal("open311:public", unit, request_id)
    stmt = items.filtered(session, principal, items.ItemFilter(kind="hotline"))
    return stmt.join(Open311Request, Open311Request.item_id == WorkItem.id).add_columns(Open311Request)


def _records(session: Session, rows: Sequence[Any], locale: str) -> list[dict[str, Any]]:
    ids = [r[0].id for r in rows]
    depts: dict[int, list[str]] = {}
    for start in range(0, len(ids), 500):
        for item_id, code in session.execute(
                select(Assignment.item_id, Assignment.department_code)
                .where(Assignment.item_id.in_(ids[start:start + 500]),
                       Assignment.state.not_in(INACTIVE_ASSIGNMENTS))
                .order_by(Assignment.id)).all():
            depts.setdefault(item_id, []).append(code)
    names = {c: u.name for c, u in units.get_many(
        session, sorted({c for cs in depts.values() for c in cs} | {r[0].owner_code for r in rows})).items()}
    cats = config.categories(session)
    default, own = definitions()
    lang = 1 if locale == "en" else 0
    out = []
    for item, link in rows:
        cat = cats.get(item.category_code or "")
        expected = item.handle_due_at
        if expected is None and item.status in OPEN_STATES:
            expected = config.deadline(session, item.received_at, item.kind, item.category_code, item.priority,
                                       "handle")
        agency = "、".join(names.get(c, c) for c in depts.get(item.id, [])) or names.get(item.owner_code)
        out.append({
            "service_request_id": item.number,
            "status": rules.open311_status(item.status),
            "status_notes": rules.UPDATE_TEXT.get(item.status, ("", ""))[lang],
            "service_name": cat.name if cat else link.service_code,
            "service_code": item.category_code,
            "description": scrub_text(item.description or ""),
            "agency_responsible": agency,
            "service_notice": own.get(link.service_code, default).notice or default.notice,
            "requested_datetime": w3c(item.created_at),
            "updated_datetime": w3c(item.closed_at if item.closed_at and item.status not in OPEN_STATES
                                    else item.updated_at),
            "expected_datetime": w3c(expected),
            "address": mask_address(item.address) if item.address else None,
            "address_id": None,
            "zipcode": None,
            "lat": item.lat,
            "long": item.lon,
            "media_url": link.media_url,
        })
    return out


def list_requests(session: Session, unit: Unit, *, ids: Sequence[str] = (), codes: Sequence[str] = (),
                  statuses: Sequence[str] = (), start: datetime | None = None, end: datetime | None = None,
                  locale: str = "zh-CN", request_id: str | None = None) -> list[dict[str, Any]]:
    """GET requests: by number (which overrides every other argument), or by service codes,
    Open311 statuses and the requested_datetime span; newest first, at most 1,000."""
    stmt = _readable(session, unit, request_id)
    if ids:
        stmt = stmt.where(WorkItem.number.in_(list(ids)))
    else:
        for code in codes:
            service(session, code)
        if codes:
            stmt = stmt.where(WorkItem.category_code.in_(list(codes)))
        if statuses and len(set(statuses)) == 1:
            stmt = stmt.where(WorkItem.status.in_(rules.statuses_for(statuses[0])))
        if start is not None:
            stmt = stmt.where(WorkItem.created_at >= start)
        if end is not None:
            stmt = stmt.where(WorkItem.created_at <= end)
    rows = session.execute(stmt.order_by(WorkItem.created_at.desc(), WorkItem.id.desc())
                           .limit(rules.MAX_RESULTS)).all()
    return _records(session, rows, locale)


def get_request(session: Session, unit: Unit, number: str, *, locale: str = "zh-CN",
                request_id: str | None = None) -> list[dict[str, Any]]:
    found = list_requests(session, unit, ids=[number], locale=locale, request_id=request_id) if len(number) <= 32 \
        else []
    if not found:
        raise Open311Error(404, "request_unknown", id=number)
    return found


def by_token(session: Session, unit: Unit, token: str, *, request_id: str | None = None) -> list[dict[str, Any]]:
    """GET tokens: the service_request_id a tracking token stands for."""
    row = None
    if 0 < len(token) <= 64:
        stmt = _readable(session, unit, request_id).where(Open311Request.token_hash == hash_secret(token))
        row = session.execute(stmt).first()
    if row is None:
        raise Open311Error(404, "token_unknown")
    return [{"service_request_id": row[0].number, "token": token}]


def list_updates(session: Session, unit: Unit, *, start: datetime | None, end: datetime | None,
                 numbers: Sequence[str] = (), locale: str = "zh-CN",
                 request_id: str | None = None) -> list[dict[str, Any]]:
    """servicerequestupdates (mySociety's extension): every status change of a public request,
    and each reply 答复, oldest first, at most 1,000. Texts are the public ones of
    ``rules.UPDATE_TEXT``, never the workers' own notes."""
    ids = _readable(session, unit, request_id).with_only_columns(WorkItem.id)
    if numbers:
        ids = ids.where(WorkItem.number.in_(list(numbers)))
    stmt = (select(TimelineEntry, WorkItem.number, Open311Request.media_url)
            .join(WorkItem, WorkItem.id == TimelineEntry.item_id)
            .join(Open311Request, Open311Request.item_id == WorkItem.id)
            .where(TimelineEntry.item_id.in_(ids),
                   or_(TimelineEntry.from_status.is_(None), TimelineEntry.from_status != TimelineEntry.to_status,
                       TimelineEntry.action == "reply")))
    if start is not None:
        stmt = stmt.where(TimelineEntry.at >= start)
    if end is not None:
        stmt = stmt.where(TimelineEntry.at <= end)
    rows = session.execute(stmt.order_by(TimelineEntry.at, TimelineEntry.id).limit(rules.MAX_RESULTS)).all()
    lang = 1 if locale == "en" else 0
    out = []
    for entry, number, media_url in rows:
        state = entry.to_status or "reported"
        text_key = "reply" if entry.action == "reply" and entry.from_status == entry.to_status else state
        out.append({
            "update_id": str(entry.id),
            "service_request_id": number,
            "status": rules.EXTENDED_STATUS.get(state, "OPEN"),
            "updated_datetime": w3c(entry.at),
            "description": rules.UPDATE_TEXT.get(text_key, ("", ""))[lang],
            "media_url": media_url if entry.action == "report" else None,
            "external_status_code": state,
        })
    return out


@dataclass(frozen=True)
class Followed:
    request: dict[str, Any]
    updates: list[dict[str, Any]]
    reply: str | None
    jurisdiction: str


def follow(session: Session, token: str, *, locale: str = "zh-CN", request_id: str | None = None) -> Followed | None:
    """The citizen's own view 查询进度 by tracking token: the public record, its updates, and
    the reply 答复 written to them (scrubbed); None for an unknown token."""
    if not 0 < len(token) <= 64:
        return None
    link = session.execute(select(Open311Request).where(Open311Request.token_hash == hash_secret(token))
                           ).scalar_one_or_none()
    if link is None:
        return None
    unit = units.get(session, link.jurisdiction_code)
    if unit is None:
        return None
    rows = session.execute(_readable(session, unit, request_id).where(Open311Request.id == link.id)).all()
    if not rows:
        return None
    item = rows[0][0]
    record = _records(session, rows, locale)[0]
    updates = list_updates(session, unit, start=None, end=None, numbers=[item.number], locale=locale,
                           request_id=request_id)
    reply = scrub_text(item.reply_text) if item.replied_at is not None and item.reply_text else None
    return Followed(record, updates, reply, unit.code)


def nearby(session: Session, unit: Unit, service_code: str, lon: float, lat: float, *, now: datetime | None = None,
           locale: str = "zh-CN", request_id: str | None = None) -> list[dict[str, Any]]:
    """Open public requests of the same service within 200 m from the last 30 days: "this may
    be the same issue" 这可能是同一问题, shown before a citizen submits (FixMyStreet-style)."""
    now = now or utcnow()
    radius = rules.NEARBY_RADIUS_M
    dlat = radius / 111_000
    dlon = dlat / max(math.cos(math.radians(lat)), 0.1)
    stmt = _readable(session, unit, request_id).where(
        WorkItem.category_code == service_code, WorkItem.status.in_(OPEN_STATES),
        WorkItem.created_at >= now - rules.NEARBY_WINDOW,
        WorkItem.lon.between(lon - dlon, lon + dlon), WorkItem.lat.between(lat - dlat, lat + dlat)).limit(200)
    rows = session.execute(stmt).all()
    found = []
    for row in rows:
        item = row[0]
        assert item.lon is not None and item.lat is not None
        d = items.haversine_m(lon, lat, item.lon, item.lat)
        if d <= radius:
            found.append((d, row))
    found.sort(key=lambda x: x[0])
    records = _records(session, [r for _, r in found[:20]], locale)
    for (d, _), rec in zip(found, records, strict=False):
        rec["distance_m"] = round(d)
    return records


# --------------------------------------------------------------------------- partner keys (admin)


def _partner_name(partner: str) -> str:
    name = " ".join(partner.split())
    if not PARTNER_NAME.match(name) or name.lower() in RESERVED_PARTNERS:
        raise Invalid("partner names are 1-48 letters, digits, spaces, dots, dashes or underscores",
                      code="invalid", field="partner")
    return name


def issue_key(session: Session, principal: Principal, partner: str) -> tuple[ApiKey, str]:
    """Issue a partner's API key 签发密钥; the plain key is returned once and stored hashed.
    A partner whose key was revoked gets a new one; an active key must be revoked first."""
    check_action(session, principal, "user.write", object_type="open311_api_key")
    name = _partner_name(partner)
    row = session.execute(select(ApiKey).where(ApiKey.partner == name)).scalar_one_or_none()
    if row is not None and row.revoked_at is None:
        raise Conflict("the partner already has an active key: revoke it first", code="key_exists",
                       params={"partner": name})
    key = KEY_PREFIX + new_secret(32)
    now = utcnow()
    if row is None:
        row = ApiKey(partner=name, key_hash=hash_secret(key), key_prefix=key[:12], created_at=now,
                     created_by=principal.username, use_count=0)
        session.add(row)
    else:
        row.key_hash, row.key_prefix = hash_secret(key), key[:12]
        row.created_at, row.created_by = now, principal.username
        row.revoked_at = row.last_used_at = None
        row.use_count = 0
    session.flush()
    audit.record(session, principal, "open311.key.issue", object_type="open311_api_key", object_id=row.id,
                 detail={"partner": name, "prefix": row.key_prefix})
    return row, key


def list_keys(session: Session, principal: Principal) -> list[ApiKey]:
    check_action(session, principal, "user.read", object_type="open311_api_key")
    return list(session.execute(select(ApiKey).order_by(ApiKey.partner)).scalars())


def revoke_key(session: Session, principal: Principal, partner: str) -> ApiKey:
    """Revoke a partner's key 吊销密钥: it is refused (403) from the next request on."""
    check_action(session, principal, "user.write", object_type="open311_api_key")
    name = " ".join(partner.split())
    row = session.execute(select(ApiKey).where(ApiKey.partner == name)).scalar_one_or_none()
    if row is None:
        raise NotFound("no such partner", params={"what": "partner", "id": name})
    if row.revoked_at is not None:
        raise Conflict("the key is already revoked", code="already_revoked", params={"partner": name})
    row.revoked_at = utcnow()
    session.flush()
    audit.record(session, principal, "open311.key.revoke", object_type="open311_api_key", object_id=row.id,
                 detail={"partner": name, "prefix": row.key_prefix})
    return row
