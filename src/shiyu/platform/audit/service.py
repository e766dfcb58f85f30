"""Writing and verifying the audit log 审计日志.

Entries are collected on the session while a unit of work runs and appended in the
``before_commit`` hook, in the same transaction as the change they describe: either
both land or neither does. Appending takes the head row's lock (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite write transactions are already serialised by
``BEGIN IMMEDIATE``), so the chain has one total order.

Denials and failed logins must survive the rollback of the request that caused them:
they are "detached" entries, written by the edge in a short transaction of their own
after the main one ends (see ``record_detached``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from shiyu.config import get_settings
from shiyu.kit.db import Database, after_unit, fetch, insert_rows
from shiyu.kit.pii import scrub_text
from shiyu.kit.timeutil import iso, utcnow
from shiyu.platform.audit.models import AuditEntry, AuditHead
from shiyu.platform.authz.principal import Principal

GENESIS = "0" * 64
_PENDING = "audit_pending"
_DETACHED = "audit_detached"


@dataclass(frozen=True)
class PendingEntry:
    at: datetime
    actor_id: int | None
    actor: str
    role: str | None
    unit_code: str | None
    action: str
    object_type: str | None
    object_id: str | None
    result: str
    request_id: str | None
    scope_path: str | None
    detail: dict[str, Any]


def _clean(value: Any) -> Any:
    """Mask personal data inside audit details (before/after values)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if value is None or isinstance(value, bool | int):
        return value
    return str(value)


def _entry(
    principal: Principal | None,
    action: str,
    *,
    object_type: str | None,
    object_id: str | None,
    result: str,
    scope_path: str | None,
    detail: dict[str, Any] | None,
    actor: str | None = None,
    request_id: str | None = None,
) -> PendingEntry:
    return PendingEntry(
        at=utcnow(),
        actor_id=principal.user_id if principal else None,
        actor=scrub_text((principal.username if principal else actor) or "anonymous"),
        role=principal.role if principal else None,
        unit_code=principal.unit_code if principal else None,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        result=result,
        request_id=request_id or (principal.request_id if principal else None),
        scope_path=scope_path,
        detail=_clean(detail or {}),
    )


def record(
    session: Session,
    principal: Principal | None,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    result: str = "ok",
    scope_path: str | None = None,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    request_id: str | None = None,
) -> None:
    """Audit a change: written in the same transaction as the change itself."""
    session.info.setdefault(_PENDING, []).append(
        _entry(principal, action, object_type=object_type, object_id=_s(object_id), result=result,
               scope_path=scope_path, detail=detail, actor=actor, request_id=request_id)
    )


def record_detached(
    session: Session,
    principal: Principal | None,
    action: str,
    *,
    object_type: str | None = None,
    object_id: str | int | None = None,
    result: str = "denied",
    scope_path: str | None = None,
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
    request_id: str | None = None,
) -> None:
    """Audit something that must be kept even if the unit of work rolls back (denials,
    failed logins). The entries are appended in a short transaction of their own when the
    unit of work ends (``kit.db.after_unit``: web requests, CLI commands and jobs alike)."""
    entries = session.info.get(_DETACHED)
    if entries is None:
        entries = session.info[_DETACHED] = []
        after_unit(session, lambda db: _write_detached(db, session))
    entries.append(_entry(principal, action, object_type=object_type, object_id=_s(object_id), result=result,
                          scope_path=scope_path, detail=detail, actor=actor, request_id=request_id))


def _write_detached(db: Database, session: Session) -> None:
    entries = take_detached(session)
    if entries:
        with db.unit_of_work(write=True) as s2:
            append_entries(s2, entries)


def _s(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def take_detached(session: Session) -> list[PendingEntry]:
    return session.info.pop(_DETACHED, [])


_HEAD_FOR_UPDATE = select(AuditHead.last_seq, AuditHead.last_hash).where(AuditHead.id == 1).with_for_update()
_HEAD_SET = (update(AuditHead).where(AuditHead.id == 1)
             .values(last_seq=bindparam("seq"), last_hash=bindparam("hash")))


def append_entries(session: Session, entries: list[PendingEntry]) -> None:
    """Append entries to the chain under the head lock (call inside a write transaction).
    Core statements built once: this runs in every write transaction."""
    if not entries:
        return
    key = get_settings().audit_key.encode()
    found = fetch(session, _HEAD_FOR_UPDATE)
    head = found[0] if found else None
    if head is None:
        session.execute(insert(AuditHead).values(id=1, last_seq=0, last_hash=GENESIS))
        seq, prev = 0, GENESIS
    else:
        seq, prev = head
    rows: list[dict[str, Any]] = []
    for e in entries:
        seq += 1
        row = {"seq": seq, "at": e.at, "actor_id": e.actor_id, "actor": e.actor, "role": e.role,
               "unit_code": e.unit_code, "action": e.action, "object_type": e.object_type,
               "object_id": e.object_id, "result": e.result, "request_id": e.request_id,
               "scope_path": e.scope_path, "detail": e.detail, "prev_hash": prev}
        row["hash"] = prev = _digest(_canonical_values(row), key)
        rows.append(row)
    # One statement for the lot (a batch of new items appends hundreds at once).
    insert_rows(session, AuditEntry.__table__, rows)  # no ORM bookkeeping per row
    fetch(session, _HEAD_SET, {"seq": seq, "hash": prev})
    loaded = session.identity_map.get(identity_key(AuditHead, 1))
    if loaded is not None:  # an AuditHead read earlier in this session is stale now
        session.expire(loaded)


_CANONICAL = ("seq", "at", "actor_id", "actor", "role", "unit_code", "action", "object_type", "object_id",
              "result", "request_id", "scope_path", "detail", "prev_hash")


def _canonical_values(values: dict[str, Any]) -> bytes:
    payload = {k: values[k] for k in _CANONICAL}
    payload["at"] = iso(values["at"])
    payload["detail"] = values["detail"] or {}
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def canonical(row: AuditEntry) -> bytes:
    return _canonical_values({k: getattr(row, k) for k in _CANONICAL})


def _digest(data: bytes, key: bytes) -> str:
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def entry_hash(row: AuditEntry, key: bytes = b"") -> str:
    return _digest(canonical(row), key)


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending: list[PendingEntry] = session.info.pop(_PENDING, [])
    if pending:
        append_entries(session, pending)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str | None = None


def _iter_entries(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).scalars().all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session, progress: Any = None) -> VerifyResult:
    """Check the whole chain: contiguous sequence, links, hashes and the head anchor."""
    key = get_settings().audit_key.encode()
    expected_seq, prev = 1, GENESIS
    checked = 0
    for row in _iter_entries(session):
        if row.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, f"entry {expected_seq} is missing")
        if row.prev_hash != prev:
            return VerifyResult(False, checked, row.seq, "link to the previous entry is broken")
        if entry_hash(row, key) != row.hash:
            return VerifyResult(False, checked, row.seq, "entry content does not match its hash")
        prev = row.hash
        expected_seq += 1
        checked += 1
        if progress is not None:
            progress(1)
    head = session.get(AuditHead, 1)
    last_seq = head.last_seq if head else 0
    last_hash = head.last_hash if head else GENESIS
    if last_seq != checked:
        return VerifyResult(False, checked, checked + 1, f"head says {last_seq} entries, found {checked}")
    if last_hash != prev:
        return VerifyResult(False, checked, checked, "newest entry does not match the head")
    return VerifyResult(True, checked)


def count(session: Session) -> int:
    head = session.get(AuditHead, 1)
    return head.last_seq if head else 0
