"""Batched intake 批量受理 (``items.intake``): many item POSTs in one transaction.

Each request in a batch is answered on its own: a bad one gets its own error and writes
nothing while the rest land; a key used twice in one batch makes one item; a revoked
token is refused by the batch that sees it; duplicates link later reports to earlier
ones; a batch whose transaction fails as a whole is taken in again one by one. Every
landed item has its timeline entry, notification and audit entry, and the chain
verifies. Runs on the test database (SQLite or PostgreSQL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from shiyu.demo.city import DEMO_PASSWORD, DemoCity
from shiyu.domains.items import intake, service
from shiyu.domains.items.models import (
    DuplicateLink,
    IdempotencyKey,
    Notification,
    TimelineEntry,
    WorkItem,
)
from shiyu.domains.items.schemas import ItemCreate
from shiyu.kit.db import Database
from shiyu.kit.errors import DomainError
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.identity import service as identity
from shiyu.platform.web.deps import resolve_principal

DISPATCHER = "dispatcher_320102001000"  # town 320102001000
VILLAGE = "320102001001"
SIBLING_VILLAGE = "320102002001"  # in another town


def _resolve(session: Any, token: str, rid: str | None, path: str) -> Any:
    return resolve_principal(session, token, request_id=rid, path=path)


@pytest.fixture(scope="module")
def token(city_db: Database) -> str:
    with city_db.unit_of_work() as s:
        out = identity.authenticate(s, username=DISPATCHER, password=DEMO_PASSWORD, totp=None, request_id=None)
    assert out.ok and out.token, out.reason
    return out.token


@pytest.fixture(scope="module")
def points(demo_city: DemoCity) -> Iterator[list[tuple[float, float]]]:
    pts = []
    for g in demo_city.grids_of(VILLAGE):
        p = g.polygon.representative_point()
        pts.append((round(p.x, 7), round(p.y, 7)))
    yield pts


def body(lon: float, lat: float, **extra: Any) -> ItemCreate:
    data = {"kind": "event", "title": "井盖缺失", "description": "路口井盖缺失", "category": "EV-01-01",
            "lon": lon, "lat": lat, "source": "grid"}
    data.update(extra)
    return ItemCreate.model_validate(data)


def req(token: str, data: ItemCreate, key: str | None = None) -> intake.IntakeRequest:
    return intake.IntakeRequest(token=token, data=data, idempotency_key=key or uuid.uuid4().hex,
                                request_id=f"t-{uuid.uuid4().hex[:12]}")


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def test_a_batch_lands_every_item_with_its_records(city_db: Database, token: str,
                                                   points: list[tuple[float, float]]) -> None:
    reqs = [req(token, body(*points[i % len(points)], title=f"井盖缺失 {i}")) for i in range(12)]
    before = count(city_db, AuditEntry)
    outs = intake.take_in(city_db, reqs, _resolve)
    assert [o.status for o in outs] == [201] * 12, [o.error for o in outs]
    ids = [o.item.id for o in outs if o.item]
    assert len(set(ids)) == 12
    for o, r in zip(outs, reqs, strict=True):
        assert o.item is not None and o.item.title == r.data.title and o.item.status == "reported"
        assert o.item.owner_code == "320102001000" and o.item.due_at is not None
        assert o.etag == f'"{o.item.id}-1"'
    assert count(city_db, TimelineEntry, TimelineEntry.item_id.in_(ids)) == 12
    assert count(city_db, Notification, Notification.item_id.in_(ids)) == 12
    assert count(city_db, IdempotencyKey, IdempotencyKey.item_id.in_(ids)) == 12
    with city_db.unit_of_work(write=False) as s:
        created = s.execute(select(AuditEntry.object_id, AuditEntry.request_id)
                            .where(AuditEntry.action == "item.create", AuditEntry.seq > before)).all()
        assert sorted(int(o) for o, _ in created) == sorted(ids)
        assert {rid for _, rid in created} == {r.request_id for r in reqs}
        assert audit.verify(s).ok


def test_one_bad_request_fails_alone(city_db: Database, token: str, points: list[tuple[float, float]],
                                     demo_city: DemoCity) -> None:
    good = [req(token, body(*points[0])), req(token, body(*points[1 % len(points)]))]
    unknown = req(token, body(*points[0], category="EV-99-99"))
    there = demo_city.grids_of(SIBLING_VILLAGE)[0].polygon.representative_point()
    foreign = req(token, body(round(there.x, 7), round(there.y, 7)))
    no_key = intake.IntakeRequest(token=token, data=body(*points[0]), idempotency_key=None, request_id=None)
    n0 = count(city_db, WorkItem)
    outs = intake.take_in(city_db, [good[0], unknown, foreign, no_key, good[1]], _resolve)
    assert [o.status for o in outs] == [201, 0, 0, 0, 201]
    codes = [getattr(o.error, "code", None) for o in outs]
    assert codes[1] == "invalid" and codes[3] == "idempotency_key_required"
    assert codes[2] == "invalid" and outs[2].error is not None
    assert "outside_jurisdiction" in str(getattr(outs[2].error, "errors", ""))
    assert count(city_db, WorkItem) == n0 + 2


def test_a_key_twice_in_one_batch_makes_one_item(city_db: Database, token: str,
                                                 points: list[tuple[float, float]]) -> None:
    key = uuid.uuid4().hex
    data = body(*points[0], title="同一请求重发")
    outs = intake.take_in(city_db, [req(token, data, key), req(token, data, key),
                                    req(token, body(*points[0], title="另一内容"), key)], _resolve)
    assert [o.status for o in outs[:2]] == [201, 200]
    assert outs[0].item and outs[1].item and outs[0].item.id == outs[1].item.id
    assert getattr(outs[2].error, "code", None) == "idempotency_mismatch"
    assert count(city_db, IdempotencyKey, IdempotencyKey.key == key) == 1
    # ... and in a later batch the key replays.
    again = intake.take_in(city_db, [req(token, data, key)], _resolve)
    assert again[0].status == 200 and again[0].item and again[0].item.id == outs[0].item.id


def test_a_revoked_token_is_refused_by_the_batch(city_db: Database, points: list[tuple[float, float]]) -> None:
    with city_db.unit_of_work() as s:
        out = identity.authenticate(s, username=DISPATCHER, password=DEMO_PASSWORD, totp=None, request_id=None)
    assert out.token and out.principal
    with city_db.unit_of_work() as s:
        identity.logout(s, identity.principal_from_token(s, out.token, request_id=None))  # type: ignore[arg-type]
    n0 = count(city_db, WorkItem)
    outs = intake.take_in(city_db, [req(out.token, body(*points[0]))], _resolve)
    assert getattr(outs[0].error, "status", None) == 401
    assert count(city_db, WorkItem) == n0


def test_duplicates_in_one_batch_link_the_later_to_the_earlier(city_db: Database, token: str,
                                                               points: list[tuple[float, float]]) -> None:
    lon, lat = points[-1]
    outs = intake.take_in(city_db, [req(token, body(lon, lat, category="EV-02-03", title=f"重复 {i}"))
                                    for i in range(3)], _resolve)
    ids = [o.item.id for o in outs if o.item]
    assert len(ids) == 3
    with city_db.unit_of_work(write=False) as s:
        links = set(s.execute(select(DuplicateLink.item_id, DuplicateLink.candidate_id)
                              .where(DuplicateLink.item_id.in_(ids))).all())
    assert {(ids[1], ids[0]), (ids[2], ids[0]), (ids[2], ids[1])} <= links
    assert not any(c > i for i, c in links)
    assert outs[0].item and outs[2].item
    assert {d["item_id"] for d in outs[2].item.duplicates} >= {ids[0], ids[1]}


def test_a_failed_batch_is_taken_in_one_by_one(city_db: Database, token: str, points: list[tuple[float, float]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The first number drawn collides with an existing item's: the batch's INSERT fails in
    the database, the batch rolls back, and each request lands on its own."""
    with city_db.unit_of_work(write=False) as s:
        taken = s.execute(select(WorkItem.number).limit(1)).scalar_one()
    real = service._new_number
    draws = iter([taken])
    monkeypatch.setattr(service, "_new_number", lambda kind, now: next(draws, None) or real(kind, now))
    reqs = [req(token, body(*points[0], title=f"回退 {i}")) for i in range(3)]
    n0 = count(city_db, WorkItem)
    outs = intake.take_in(city_db, reqs, _resolve)
    assert [o.status for o in outs] == [201, 201, 201], [o.error for o in outs]
    assert count(city_db, WorkItem) == n0 + 3
    with city_db.unit_of_work(write=False) as s:
        assert audit.verify(s).ok


def test_the_batcher_takes_concurrent_requests_in_one_batch(city_db: Database, token: str,
                                                            points: list[tuple[float, float]]) -> None:
    async def go() -> tuple[list[intake.Outcome], intake.IntakeBatcher]:
        b = intake.IntakeBatcher(city_db, _resolve)
        outs = await asyncio.gather(*(b.submit(req(token, body(*points[i % len(points)]))) for i in range(20)))
        return list(outs), b

    # A thread of its own: another test's event loop may be running in this one (Playwright).
    with ThreadPoolExecutor(1) as pool:
        outs, b = pool.submit(asyncio.run, go()).result()
    assert [o.status for o in outs] == [201] * 20
    assert b.batches == 1 and b.largest == 20
    assert len({o.item.id for o in outs if o.item}) == 20


def test_errors_are_domain_errors(city_db: Database, points: list[tuple[float, float]]) -> None:
    outs = intake.take_in(city_db, [req("not-a-token", body(*points[0]))], _resolve)
    assert isinstance(outs[0].error, DomainError) and outs[0].error.status == 401
