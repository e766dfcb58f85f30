"""Audit log 审计日志: written with the change, hash-chained, tamper-evident, ordered
under concurrent writers, and denials kept even when the request fails."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from shiyu.kit.errors import NotFound
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_scope
from shiyu.platform.audit.models import AuditEntry, AuditHead
from shiyu.platform.authz.principal import GrantScope, Principal


def _seed(db: Any, n: int = 12) -> None:
    p = Principal.system("test")
    for i in range(n):
        with db.unit_of_work() as s:
            audit.record(s, p, "test.write", object_type="thing", object_id=i, scope_path="/1/",
                         detail={"i": i, "note": f"value {i}"})


def _verify_with(db: Any, mutate: Any) -> audit.VerifyResult:
    """Apply a tampering statement and verify inside the same transaction, then roll back."""
    s = db.session(write=True)
    try:
        mutate(s)
        s.flush()
        return audit.verify(s)
    finally:
        s.rollback()
        s.close()


def test_chain_intact(empty_db: Any) -> None:
    _seed(empty_db)
    with empty_db.unit_of_work(write=False) as s:
        r = audit.verify(s)
    assert r.ok and r.checked == 12


@pytest.mark.parametrize(
    ("name", "mutate", "bad"),
    [
        ("changed result", lambda s: s.execute(update(AuditEntry).where(AuditEntry.seq == 5)
                                               .values(result="denied")), 5),
        ("changed detail", lambda s: s.execute(update(AuditEntry).where(AuditEntry.seq == 7)
                                               .values(detail={"i": 70})), 7),
        ("changed actor", lambda s: s.execute(update(AuditEntry).where(AuditEntry.seq == 1)
                                              .values(actor="someone")), 1),
        ("changed time", lambda s: s.execute(update(AuditEntry).where(AuditEntry.seq == 12)
                                             .values(at=AuditEntry.at)), None),
        ("deleted middle", lambda s: s.execute(delete(AuditEntry).where(AuditEntry.seq == 6)), 6),
        ("deleted first", lambda s: s.execute(delete(AuditEntry).where(AuditEntry.seq == 1)), 1),
        ("deleted newest", lambda s: s.execute(delete(AuditEntry).where(AuditEntry.seq == 12)), 12),
        ("relinked prev_hash", lambda s: s.execute(update(AuditEntry).where(AuditEntry.seq == 9)
                                                   .values(prev_hash="f" * 64)), 9),
    ],
)
def test_tampering_detected(empty_db: Any, name: str, mutate: Any, bad: int | None) -> None:
    _seed(empty_db)
    r = _verify_with(empty_db, mutate)
    if bad is None:  # a no-op rewrite must stay valid: the check is not trigger-happy
        assert r.ok, name
        return
    assert not r.ok, name
    assert r.bad_seq == bad, (name, r)


def test_swapped_entries_detected(empty_db: Any) -> None:
    _seed(empty_db)

    def swap(s: Any) -> None:
        a = s.get(AuditEntry, 3)
        b = s.get(AuditEntry, 8)
        cols = [c.key for c in AuditEntry.__table__.columns if c.key != "seq"]
        va = {c: getattr(a, c) for c in cols}
        vb = {c: getattr(b, c) for c in cols}
        for c in cols:
            setattr(a, c, vb[c])
            setattr(b, c, va[c])

    r = _verify_with(empty_db, swap)
    assert not r.ok and r.bad_seq == 3


def test_truncation_with_head_rewritten_detected(empty_db: Any) -> None:
    """Deleting the newest entry and winding the head back by hand still fails: the
    head's hash is the deleted entry's, and rewriting it needs the previous hash."""
    _seed(empty_db)

    def truncate(s: Any) -> None:
        s.execute(delete(AuditEntry).where(AuditEntry.seq == 12))
        s.execute(update(AuditHead).values(last_seq=11))

    r = _verify_with(empty_db, truncate)
    assert not r.ok


def test_entry_written_with_the_change_or_not_at_all(empty_db: Any) -> None:
    p = Principal.system("test")
    with pytest.raises(RuntimeError), empty_db.unit_of_work() as s:
        audit.record(s, p, "test.write", object_type="thing", object_id=1)
        raise RuntimeError("the change fails")
    with empty_db.unit_of_work(write=False) as s:
        assert audit.count(s) == 0


def test_denial_kept_after_rollback(empty_db: Any) -> None:
    user = Principal(user_id=1, username="u", role="leader", unit_code="320102001000",
                     grants=(GrantScope("leader", "320102001000", "/320100000000/320102000000/320102001000/"),),
                     request_id="req-1")
    s = empty_db.session(write=True)
    with pytest.raises(NotFound):
        check_scope(s, user, "unit.read", "/320100000000/320103000000/", object_type="unit", object_id="x")
    s.rollback()
    detached = audit.take_detached(s)
    s.close()
    with empty_db.unit_of_work() as s2:
        audit.append_entries(s2, detached)
    with empty_db.unit_of_work(write=False) as s3:
        rows = s3.execute(select(AuditEntry)).scalars().all()
        assert [(r.result, r.request_id, r.actor) for r in rows] == [("denied", "req-1", "u")]
        assert audit.verify(s3).ok


def test_personal_data_masked_in_details(empty_db: Any) -> None:
    with empty_db.unit_of_work() as s:
        audit.record(s, Principal.system(), "test.write", detail={"phone": "13812345678",
                                                                  "id": "11010519491231002X"})
    with empty_db.unit_of_work(write=False) as s:
        row = s.execute(select(AuditEntry)).scalar_one()
        assert row.detail == {"phone": "138****5678", "id": "110***********002X"}


def test_concurrent_writers_keep_one_chain(empty_db: Any) -> None:
    """Four threads append 25 entries each through separate transactions: the chain
    stays contiguous and verifies (the head row lock orders them)."""
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(25):
                with empty_db.unit_of_work() as s:
                    audit.record(s, Principal.system(f"w{k}"), "test.concurrent", object_id=f"{k}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with empty_db.unit_of_work(write=False) as s:
        r = audit.verify(s)
        assert r.ok and r.checked == 100
