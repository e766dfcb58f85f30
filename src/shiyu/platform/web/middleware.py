"""ASGI middleware: request ids and the request body size limit."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

from shiyu.kit.pii import scrub_text
from shiyu.platform.web.messages import detail, pick_locale, title

_RNG = random.Random()
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    """A random id in groups of four hex digits that does not look like a phone number
    or resident ID to a reader or a scrubber. Grouping alone is not enough (``a138-1234-
    5678`` reads as a mobile in 3-4-4 form, about one id in a thousand), so such ids
    are drawn again."""
    while True:
        # Not a secret: the process's PRNG (seeded from the OS) is enough and, unlike uuid4's
        # os.urandom, costs no system call on every request.
        h = f"{_RNG.getrandbits(128):032x}"
        rid = "-".join(h[i : i + 4] for i in range(0, 32, 4))
        if scrub_text(rid) == rid:
            return rid


class RequestIdMiddleware:
    """Give every request an id (kept from a well-formed ``X-Request-ID``) and echo it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for k, v in scope.get("headers", []):
            if k == b"x-request-id":
                cand = v.decode("latin-1")
                rid = cand if _RID.match(cand) and scrub_text(cand) == cand else None
        rid = rid or new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()

        async def _send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", rid.encode()))
                # Server time of the request, for the page-time benchmark and browsers' dev tools.
                headers.append((b"server-timing", f"app;dur={ms:.1f}".encode()))
            await send(message)

        await self.app(scope, receive, _send)


class _TooLarge(Exception):
    pass


#: Path prefix -> how a refusal is written under it, for domains that answer in another
#: error format than Problem Details (Open311's error list): ``fn(path, status, text)``
#: returns ``(content_type, body)``.
REFUSAL_FORMATS: dict[str, Callable[[str, int, str], tuple[bytes, bytes]]] = {}


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with a 413 Problem Details response, whether
    the size is declared in Content-Length or only discovered while streaming."""

    #: Paths (suffixes) that take file uploads get a larger limit.
    UPLOAD_SUFFIXES = ("/attachments",)
    UPLOAD_LIMIT = 6 * 1024 * 1024

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def limit_for(self, path: str) -> int:
        return max(self.limit, self.UPLOAD_LIMIT) if path.endswith(self.UPLOAD_SUFFIXES) else self.limit

    async def _reject(self, scope: dict[str, Any], send: Any, limit: int) -> None:
        headers = dict(scope.get("headers", []))
        loc = pick_locale(headers.get(b"accept-language", b"").decode("latin-1") or None)
        problem: dict[str, Any] = {
            "type": "urn:shiyu:problem:payload_too_large", "title": title(413, loc), "status": 413,
            "detail": detail("payload_too_large", loc), "instance": scrub_text(scope.get("path", "")),
            "code": "payload_too_large", "field": "body", "limit_bytes": limit,
        }
        rid = scope.get("state", {}).get("request_id")
        if rid:
            problem["request_id"] = rid
        body = json.dumps(problem, ensure_ascii=False).encode()
        ctype = b"application/problem+json"
        path = scope.get("path", "")
        for prefix, write in REFUSAL_FORMATS.items():
            if path.startswith(prefix):
                ctype, body = write(path, 413, problem["detail"])
                break
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = limit + 1
                if declared > limit:
                    await self._reject(scope, send, limit)
                    return
        seen = 0
        started = False
        too_large = replaced = False

        async def _receive() -> dict[str, Any]:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def _send(message: dict[str, Any]) -> None:
            nonlocal started, replaced
            if too_large and not started and message["type"] == "http.response.start":
                # The app caught _TooLarge while reading the body (FastAPI turns any body
                # error into a 400): answer 413 instead and drop the app's own response.
                started = replaced = True
                await self._reject(scope, send, limit)
                return
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, _receive, _send)
        except _TooLarge:
            if not started:
                await self._reject(scope, send, limit)
