"""Batched intake 批量受理: many ``POST /api/v1/items`` in one transaction (group commit).

On a flood day the cost of taking in an item is not its checks but its transaction: a
commit waits for the write-ahead log to reach the disk, and every commit appends to the
one audit chain under its head lock, so one-item transactions queue behind each other.
Here the requests that arrive while a batch is being written wait for the next batch,
and each batch is one transaction: one token check per token, one idempotency lookup,
one INSERT per table, one duplicate search, one audit append, one commit. A request is
answered only after its batch has committed, so an acknowledged item is durable exactly
as with one transaction per request. No timer holds a request back: a lone request is a
batch of one.

Each request in a batch is checked on its own (``service.prepare_item``, the same checks
as ``service.create_item``): one that fails gets its own 4xx and writes nothing, the
others go on. When the batch as a whole fails (another process took the same
Idempotency-Key or item number between our lookup and our insert, a serialisation
failure), it is rolled back and every request is taken in again on its own through
``service.create_item``, which handles those races one item at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import insert, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from shiyu.domains.geo import service as geo
from shiyu.domains.items import service
from shiyu.domains.items.models import Attachment, IdempotencyKey, Party, TimelineEntry, WorkItem
from shiyu.domains.items.notify import notify_many
from shiyu.domains.items.schemas import ItemCreate, ItemRead
from shiyu.domains.items.views import item_read
from shiyu.kit.db import Database, fetch, insert_rows
from shiyu.kit.errors import DomainError
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action
from shiyu.platform.authz.principal import Principal

#: The most requests one transaction takes in; more wait for the next batch.
MAX_BATCH = 256
#: Batches one process writes at once: while one waits for the database (its commit's
#: flush to disk, the audit head lock), the next is being checked.
WRITERS = int(os.environ.get("SHIYU_INTAKE_WRITERS", "1"))
PAGE = service.PAGE


def _padded(values: list[Any]) -> list[Any]:
    """``values`` repeated up to a multiple of ``PAGE`` (for ``IN`` lists)."""
    if not values:
        return values
    return values + [values[0]] * (-len(values) % PAGE)


@dataclass(frozen=True)
class IntakeRequest:
    """One ``POST /api/v1/items`` as the batch sees it."""
    token: str
    data: ItemCreate
    idempotency_key: str | None
    request_id: str | None
    path: str = "/api/v1/items"


@dataclass
class Outcome:
    """What to answer: 201 (new) or 200 (replay) with the item, or the error to raise."""
    status: int = 0
    item: ItemRead | None = None
    etag: str | None = None
    error: BaseException | None = None


ResolvePrincipal = Callable[[Session, str, str | None, str], Principal]


# --------------------------------------------------------------------------- the batch


def take_in(db: Database, requests: list[IntakeRequest], resolve: ResolvePrincipal,
            now: datetime | None = None) -> list[Outcome]:
    """Take in ``requests`` in one transaction, or, if that transaction fails as a whole,
    each in a transaction of its own."""
    session = db.session(write=True)
    try:
        outcomes = _batch(session, requests, resolve, now or utcnow())
        session.commit()
    except DBAPIError:
        session.rollback()
        audit.take_detached(session)  # the one-by-one pass records its own denials
        db.close_unit(session)
        return [_one(db, r, resolve) for r in requests]
    except BaseException:
        session.rollback()
        db.close_unit(session)
        raise
    db.close_unit(session)
    return outcomes


def _one(db: Database, r: IntakeRequest, resolve: ResolvePrincipal) -> Outcome:
    """One request in its own unit of work, through ``service.create_item``."""
    try:
        with db.unit_of_work() as session:
            principal = resolve(session, r.token, r.request_id, r.path)
            created = service.create_item(session, principal, r.data, idempotency_key=r.idempotency_key)
            session.flush()
            return Outcome(200 if created.replayed else 201, item_read(session, principal, created.item),
                           service.etag(created.item))
    except Exception as e:  # noqa: BLE001 - a 4xx, or a 500 for this request alone
        return Outcome(error=e)


def _batch(session: Session, requests: list[IntakeRequest], resolve: ResolvePrincipal,
           now: datetime) -> list[Outcome]:
    outcomes = [Outcome() for _ in requests]
    # 1. Who: each token read once, in this transaction (a revoked token or a changed
    #    grant counts from the batch that sees it).
    principals: dict[str, Principal | DomainError] = {}
    for r in requests:
        if r.token not in principals:
            try:
                principals[r.token] = resolve(session, r.token, r.request_id, r.path)
            except DomainError as e:
                principals[r.token] = e
    who: list[Principal | None] = []
    for r, out in zip(requests, outcomes, strict=True):
        p = principals[r.token]
        if isinstance(p, DomainError):
            out.error, p = p, None
        else:
            p = dataclasses.replace(p, request_id=r.request_id)
            try:
                check_action(session, p, "item.create", object_type="work_item")
                service.check_key(r.idempotency_key)
            except DomainError as e:
                out.error, p = e, None
        who.append(p)

    # 2. Replays: keys already used, looked up together; a key twice in this batch is
    #    answered from its first use.
    live = [i for i, p in enumerate(who) if p is not None]
    hashes = {i: service.request_hash(requests[i].data) for i in live}
    known = _known_keys(session, [(who[i].username, requests[i].idempotency_key) for i in live])  # type: ignore[union-attr]
    first_use: dict[tuple[str, str], int] = {}
    replay_of: dict[int, int] = {}
    todo: list[int] = []
    for i in live:
        p = who[i]
        assert p is not None
        k = (p.username, str(requests[i].idempotency_key))
        if k in known:
            key_row = known[k]
            if key_row.request_hash != hashes[i]:
                outcomes[i].error = service.idempotency_mismatch()
            else:
                item = session.get(WorkItem, key_row.item_id)
                assert item is not None
                outcomes[i] = Outcome(200, item_read(session, p, item), service.etag(item))
        elif k in first_use:
            replay_of[i] = first_use[k]
        else:
            first_use[k] = i
            todo.append(i)

    # 3. Check and build each new item in memory.
    prepared: list[tuple[int, service.Prepared]] = []
    points = [i for i in todo if requests[i].data.lon is not None and requests[i].data.lat is not None]
    grids = dict(zip(points, geo.grids_at(session, [requests[i].data.lon for i in points],  # type: ignore[misc]
                                          [requests[i].data.lat for i in points]), strict=True)) if points else {}
    for i in todo:
        p = who[i]
        assert p is not None
        try:
            if i in grids:
                prep = service.prepare_item(session, p, requests[i].data, now, located=grids[i])
            else:
                prep = service.prepare_item(session, p, requests[i].data, now)
            prepared.append((i, prep))
        except DomainError as e:
            outcomes[i].error = e

    # 4. Write: one INSERT per table for the lot.
    if prepared:
        _write(session, requests, who, hashes, prepared, now)
        dups = service.find_duplicates(session, [prep.item for _, prep in prepared], now)
        for i, prep in prepared:
            item, p = prep.item, who[i]
            assert p is not None
            visible = [d for d in dups.get(item.id, []) if p.can_at("item.read", d.pop("scope_path"))]
            outcomes[i] = Outcome(201, item_read(
                session, p, item, parties=prep.party_rows, assignments=[], duplicates=visible,
                attachments=None if prep.files else []), service.etag(item))
    session.flush()

    for i, j in replay_of.items():
        first = outcomes[j]
        if first.error is not None:
            outcomes[i].error = first.error
        elif hashes[i] != hashes[j]:
            outcomes[i].error = service.idempotency_mismatch()
        else:
            outcomes[i] = Outcome(200, first.item, first.etag)
    return outcomes


#: PostgreSQL: the (principal, key) pairs as two arrays joined to the unique index, one
#: statement text for any batch size. (A row-value ``IN`` list of padded pairs, prepared,
#: got a generic plan that scanned the whole table.)
_KNOWN_KEYS_PG = text(
    "SELECT k.principal, k.key, k.request_hash, k.item_id "
    "FROM unnest(CAST(:principals AS TEXT[]), CAST(:keys AS TEXT[])) AS v(principal, key) "
    "JOIN idempotency_keys k ON k.principal = v.principal AND k.key = v.key")


def _known_keys(session: Session, keys: list[tuple[str, str | None]]) -> dict[tuple[str, str], Any]:
    """The known keys among ``keys``: rows with ``principal``, ``key``, ``request_hash``
    and ``item_id``."""
    if not keys:
        return {}
    pairs = sorted({(u, str(k)) for u, k in keys})
    if session.get_bind().dialect.name == "postgresql":
        rows = fetch(session, _KNOWN_KEYS_PG, {"principals": [u for u, _ in pairs], "keys": [k for _, k in pairs]})
    else:
        # (principal, key) pairs, not two IN lists: each pair is one probe of the unique index.
        rows = session.execute(select(IdempotencyKey).where(
            tuple_(IdempotencyKey.principal, IdempotencyKey.key).in_(_padded(pairs)))).scalars()
    return {(r.principal, r.key): r for r in rows}


def _columns(item: WorkItem) -> dict[str, Any]:
    """The attributes set on a transient item (the others take their column defaults)."""
    return {k: v for k, v in item.__dict__.items() if not k.startswith("_") and k != "id"}


def _write(session: Session, requests: list[IntakeRequest], who: list[Principal | None], hashes: dict[int, str],
           prepared: list[tuple[int, service.Prepared]], now: datetime) -> None:
    items = [prep.item for _, prep in prepared]
    table = WorkItem.__table__
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # Ids from the sequence first, so that every row of the batch can be written at
        # once below. (A multi-row INSERT ... RETURNING is one statement of tens of
        # kilobytes, which psycopg parses again on every execution: it caches only
        # statements up to 4 kB.)
        ids = sorted(r[0] for r in fetch(session, _NEXT_IDS, {"n": len(items)}))
    else:
        ids = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                              [_columns(it) for it in items],
                              execution_options={"insertmanyvalues_page_size": PAGE}).scalars().all()
    for item, new_id in zip(items, ids, strict=True):
        item.id = new_id
    key_rows = [
        {"principal": who[i].username, "key": requests[i].idempotency_key,  # type: ignore[union-attr]
         "request_hash": hashes[i], "item_id": prep.item.id, "created_at": now}
        for i, prep in prepared]
    timeline, notes = [], []
    for i, prep in prepared:
        item, p = prep.item, who[i]
        assert p is not None
        timeline.append({"item_id": item.id, "at": now, "actor": p.username, "role": p.role,
                         "unit_code": p.unit_code, "action": "report", "from_status": None,
                         "to_status": item.status, "note": None,
                         "data": {"source": item.source, "grid": item.grid_code}})
        audit.record(session, p, "item.create", object_type="work_item", object_id=item.id,
                     scope_path=item.scope_path, detail=service.create_detail(item))
        notes.append({"unit_code": prep.owner.code, "scope_path": prep.owner.path, "item_id": item.id,
                      "kind": "new", "message": service.new_item_message(item), "created_at": now})
    if postgres:
        insert_rows(session, table, [_columns(it) | {"id": it.id} for it in items])
    insert_rows(session, IdempotencyKey.__table__, key_rows)
    insert_rows(session, TimelineEntry.__table__, timeline)
    notify_many(session, notes)
    # Parties and attachments (disputes, petitions, photos) after their items exist.
    for i, prep in prepared:
        item, p = prep.item, who[i]
        assert p is not None
        for party, idn, phone in prep.parties:
            row = Party(item_id=item.id, role=party.role, name=party.name, id_number=idn, phone=phone,
                        address=party.address)
            session.add(row)
            prep.party_rows.append(row)
        for a, raw in prep.files:
            session.add(Attachment(item_id=item.id, filename=a.filename, content_type=a.content_type, size=len(raw),
                                   sha256=service.sha256_hex(raw), content=raw, uploaded_by=p.username))
        if item.kind == "petition":
            session.flush()
            service.flag_repeat_petition(session, item, prep.parties)
            if item.repeat_of is not None:
                session.execute(update(WorkItem).where(WorkItem.id == item.id).values(repeat_of=item.repeat_of))


_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence('work_items', 'id')) FROM generate_series(1, :n)")


# --------------------------------------------------------------------------- the queue


class IntakeBatcher:
    """Queues item requests of one event loop and writes them in batches, up to
    ``writers`` batches at a time, each in a worker thread. There is no background task:
    a request that finds fewer than ``writers`` drain tasks running starts one, and a
    drain task ends when the queue is empty."""

    def __init__(self, db: Database, resolve: ResolvePrincipal, *, max_batch: int = MAX_BATCH,
                 writers: int = WRITERS) -> None:
        self.db, self.resolve, self.max_batch, self.writers = db, resolve, max_batch, writers
        self._queue: deque[tuple[IntakeRequest, asyncio.Future[Outcome]]] = deque()
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.largest = 0

    async def submit(self, request: IntakeRequest) -> Outcome:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._queue.append((request, fut))
        if self._draining < self.writers:
            self._draining += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _drain(self) -> None:
        try:
            while self._queue:
                n = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                self.batches += 1
                self.largest = max(self.largest, n)
                try:
                    outcomes = await anyio.to_thread.run_sync(take_in, self.db, [r for r, _ in batch], self.resolve)
                except Exception as e:  # unexpected: every request of the batch answers with it (a 500)
                    outcomes = [Outcome(error=e) for _ in batch]
                for (_, fut), out in zip(batch, outcomes, strict=True):
                    if not fut.done():  # a client that went away has had its future cancelled
                        fut.set_result(out)
        finally:
            self._draining -= 1


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, IntakeBatcher]] = (
    weakref.WeakKeyDictionary())


def batcher(db: Database, resolve: ResolvePrincipal) -> IntakeBatcher:
    """The batcher of ``db`` on the running event loop."""
    loop = asyncio.get_running_loop()
    per_loop = _batchers.setdefault(loop, {})
    b = per_loop.get(id(db))
    if b is None or b.db is not db:
        b = per_loop[id(db)] = IntakeBatcher(db, resolve)
    return b
