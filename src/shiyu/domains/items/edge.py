"""The intake edge 受理入口: ``POST /api/v1/items`` without FastAPI's per-request machinery.

On a flood day nearly every request is a new item, and the framework around it (routing
through every route of the application, dependency solving, the request object, the
exception and exit-stack wrappers) cost more CPU than the checks and the write: measured
on the benchmark machine, FastAPI answered an empty endpoint about 4,500 times a second
and bare ASGI under the same uvicorn about 20,000.

So this middleware answers the common case itself, through the same code the route uses
(the same ``ItemCreate`` model, ``intake.batcher`` and ``views.item_read``, the same
exception handlers for every error), and hands everything else to the application
unchanged, with the body it has read replayed: a request it does not serve is the
route's, exactly as if the edge were not there. It serves a request only when

* it is ``POST /api/v1/items`` with an ``Authorization: Bearer`` header (no session
  cookie, so no CSRF question) and a JSON body;
* that token passed the route's check in this process moments ago
  (``deps.token_checked_lately``; the batch reads the token and grants again anyway);
* the ``Idempotency-Key`` header is within its limit and the body is a valid
  ``ItemCreate`` (a 422 is the route's, with its own wording).

It sits inside the request-id and body-limit middlewares, so those apply as to any
request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from shiyu.domains.items import intake
from shiyu.domains.items.api import resolve_token
from shiyu.domains.items.schemas import ItemCreate
from shiyu.platform.web.deps import token_checked_lately

PATH = "/api/v1/items"
#: The route's limit on the header (``Header(max_length=128)``).
KEY_MAX = 128


class IntakeEdge:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        token = key = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                token = rest.strip() if scheme.lower() == "bearer" else None
            elif name == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
        if not token or not json_body or (key is not None and len(key) > KEY_MAX) \
                or not token_checked_lately(token):
            await self.app(scope, receive, send)
            return

        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            data = ItemCreate.model_validate_json(body)
        except ValidationError:
            await self.app(scope, _replay(body, receive), send)
            return

        app = scope["app"]
        rid = scope.get("state", {}).get("request_id")
        out = await intake.batcher(app.state.db, resolve_token).submit(
            intake.IntakeRequest(token=token, data=data, idempotency_key=key, request_id=rid, path=PATH))
        if out.error is not None:
            response = await _handled(app, Request(scope, receive), out.error)
            await response(scope, receive, send)
            return
        assert out.item is not None and out.etag is not None
        payload = out.item.model_dump_json().encode()
        await send({"type": "http.response.start", "status": out.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"etag", out.etag.encode()), (b"location", f"{PATH}/{out.item.id}".encode())]})
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Any) -> Any:
    """``receive`` for the application: the body already read, then the client's own."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _handled(app: Any, request: Request, exc: BaseException) -> Any:
    """The response the application's exception handler for ``exc`` gives (as the route
    raising it would get); an exception no handler takes is raised."""
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            result = handler(request, exc)
            return await result if asyncio.iscoroutine(result) else result
    raise exc
