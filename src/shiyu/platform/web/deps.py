"""Request edge: one session per request, committed once; the principal from the bearer token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from shiyu.kit.db import Database
from shiyu.kit.errors import Unauthorized
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal
from shiyu.platform.identity import service as identity

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The web UI's session cookie holds a bearer token; unsafe requests made with it need
#: the CSRF header derived from it (the UI sends it with every HTMX request).
SESSION_COOKIE = "shiyu_session"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token(token: str) -> str:
    """The CSRF value for a session token, in lower-case base32.

    Base32 has no ``0``, ``1``, ``8`` or ``9``, so the token embedded in every page can
    never look like a mobile number (which starts with ``1``) to the personal-data
    scanners; a hex digest did, about once in a few thousand sessions.
    """
    digest = hmac.new(b"shiyu-csrf", token.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:32].lower()


def csrf_ok(request: Request, token: str) -> bool:
    """Safe methods need nothing; unsafe ones made with the session cookie need the header."""
    return request.method in READ_METHODS or hmac.compare_digest(request.headers.get(CSRF_HEADER, ""),
                                                                 csrf_token(token))


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


_db_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def _db_slot() -> AsyncIterator[None]:
    """Admit at most half the worker threads' worth of requests to the database at once.

    A request's transaction starts in one worker-thread hop (the principal lookup; on
    SQLite a write request holds ``BEGIN IMMEDIATE`` from there) and continues in the
    next (the endpoint). Without a bound, a burst bigger than the thread pool fills
    every thread with requests waiting for that lock or a pool connection while the
    holder waits for a thread: a deadlock ending in busy/pool timeouts. Waiting here
    costs no thread."""
    loop = asyncio.get_running_loop()
    slots = _db_slots.get(loop)
    if slots is None:
        total = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
        slots = _db_slots[loop] = asyncio.Semaphore(max(1, total // 2))
    async with slots:
        yield


def _session(request: Request, db: Annotated[Database, Depends(get_db)],
             _slot: Annotated[None, Depends(_db_slot)]) -> Iterator[Session]:
    """The unit of work of one request: commit at the end, roll back on error; audit
    entries that must outlive a rollback (denials) are written afterwards."""
    session = db.session(write=request.method not in READ_METHODS)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        db.close_unit(session)


SessionDep = Annotated[Session, Depends(_session, scope="function")]


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def bearer_token(request: Request) -> str:
    """The request's bearer token (the Authorization header, or the UI's session cookie
    with its CSRF header on unsafe methods); 401 when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and request.cookies.get(SESSION_COOKIE):
        scheme, token = "bearer", request.cookies[SESSION_COOKIE]
        if not csrf_ok(request, token):
            raise Unauthorized("missing CSRF header for a cookie session", code="unauthorized")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token", code="unauthorized")
    return token.strip()


def resolve_principal(session: Session, token: str, *, request_id: str | None, path: str) -> Principal:
    """The principal of a token, read in ``session``; an invalid, expired or revoked token
    is a 401 with a detached audit entry."""
    principal = identity.principal_from_token(session, token, request_id=request_id)
    if principal is None:
        audit.record_detached(session, None, "auth.token", result="denied", actor="anonymous",
                              request_id=request_id, detail={"reason": "invalid or expired token", "path": path})
        raise Unauthorized("invalid or expired token", code="unauthorized")
    return principal


def _principal(request: Request, session: SessionDep) -> Principal:
    return resolve_principal(session, bearer_token(request), request_id=request_id(request), path=request.url.path)


PrincipalDep = Annotated[Principal, Depends(_principal)]


#: Tokens seen valid lately, per process: token hash -> when the check expires. Only the
#: endpoints that check the token again in their own transaction use it (batched intake:
#: ``items.intake`` re-reads the token and the grants with the batch), to refuse a bad
#: token before queueing the request.
_TOKEN_SEEN: dict[str, float] = {}
TOKEN_SEEN_TTL = 5.0
_TOKEN_CHECKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[None]]] = (
    weakref.WeakKeyDictionary())


async def checked_token(request: Request, db: Annotated[Database, Depends(get_db)]) -> str:
    """The bearer token, checked against the database at most every few seconds per
    process. Callers must check it again where they act on it."""
    token = bearer_token(request)
    key = hashlib.sha256(token.encode()).hexdigest()
    now = time.monotonic()
    if _TOKEN_SEEN.get(key, 0.0) > now:
        return token

    def check() -> None:
        with db.unit_of_work(write=False) as session:
            resolve_principal(session, token, request_id=request_id(request), path=request.url.path)

    # Requests arriving together with the same token wait for the check already running;
    # if it fails, each checks on its own (so each refusal is audited).
    loop = asyncio.get_running_loop()
    checks = _TOKEN_CHECKS.setdefault(loop, {})
    running = checks.get(key)
    if running is not None:
        with contextlib.suppress(Exception):
            await asyncio.shield(running)
        if _TOKEN_SEEN.get(key, 0.0) > time.monotonic():
            return token
    mine = checks[key] = asyncio.ensure_future(anyio.to_thread.run_sync(check))
    try:
        await asyncio.shield(mine)
    finally:
        if checks.get(key) is mine:
            del checks[key]
    if len(_TOKEN_SEEN) > 10_000:
        _TOKEN_SEEN.clear()
    _TOKEN_SEEN[key] = now + TOKEN_SEEN_TTL
    return token


CheckedTokenDep = Annotated[str, Depends(checked_token)]


def token_checked_lately(token: str) -> bool:
    """Whether ``checked_token`` found ``token`` valid in this process moments ago."""
    return _TOKEN_SEEN.get(hashlib.sha256(token.encode()).hexdigest(), 0.0) > time.monotonic()
