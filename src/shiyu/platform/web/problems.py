"""RFC 9457 Problem Details for every error, in the user's language, naming the field at fault."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError as DBAPIDataError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shiyu.kit.errors import DomainError
from shiyu.kit.pii import scrub_text
from shiyu.platform.web.messages import detail, detail_with, pick_locale, title, validation_message

log = logging.getLogger("shiyu.web")
PROBLEM_JSON = "application/problem+json"


def locale_of(request: Request) -> str:
    return pick_locale(request.headers.get("accept-language"))


def problem(
    request: Request,
    status: int,
    code: str,
    *,
    detail_text: str | None = None,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    loc = locale_of(request)
    body: dict[str, Any] = {
        "type": f"urn:shiyu:problem:{code}",
        "title": title(status, loc),
        "status": status,
        "detail": detail_text or detail(code, loc, title(status, loc)),
        "instance": scrub_text(request.url.path),  # the path may carry what the client typed
        "code": code,
    }
    if field:
        body["field"] = field
    if errors:
        body["errors"] = errors
    rid = getattr(request.state, "request_id", None)
    if rid:
        body["request_id"] = rid
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_problem(request: Request, exc: DomainError) -> JSONResponse:
    loc = locale_of(request)
    errors = []
    for e in exc.errors:
        item = {k: v for k, v in e.items()}
        if "reason" in item and "message" not in item:
            item["message"] = item["reason"]
        errors.append(item)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    text = detail_with(exc.code, loc, exc.params, "")
    if not text:
        text = scrub_text(exc.detail) if exc.detail else title(exc.status, loc)
    return problem(request, exc.status, exc.code, detail_text=text, field=exc.field, errors=errors or None,
                   headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        return ".".join(parts[1:]) if parts[0] == "body" else ".".join(parts[1:])
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    from shiyu.platform.web import openapi

    openapi.install(app)  # the document names these Problem responses

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return domain_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        loc = locale_of(request)
        errors = []
        for err in exc.errors():
            # A body that is not JSON at all: its loc holds the parser's character offset.
            field = "body" if err.get("type") == "json_invalid" else _field_of(tuple(err.get("loc", ())))
            errors.append({
                "field": field,
                "in": str(err.get("loc", ("body",))[0]),
                "type": err.get("type"),
                "message": validation_message(str(err.get("type")), loc, scrub_text(str(err.get("msg", "")))),
            })
        first = errors[0]["field"] if errors else None
        return problem(request, 422, "invalid", field=first, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "route_not_found", 405: "method_not_allowed", 401: "unauthorized",
                413: "payload_too_large"}.get(exc.status_code, "http_error")
        return problem(request, exc.status_code, code, headers=getattr(exc, "headers", None))

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        # Two writers read the same version; the second one's versioned UPDATE matched no
        # row (PostgreSQL lets both pass the If-Match check): same answer as a stale ETag.
        return problem(request, 412, "stale_etag", field="If-Match")

    @app.exception_handler(DBAPIDataError)
    async def _data(request: Request, exc: DBAPIDataError) -> JSONResponse:
        # PostgreSQL refuses NUL (0x00) in text; SQLite stores it. Input at fault, never a 500.
        if "NUL" in str(exc.orig):
            return problem(request, 422, "nul_character", field="request")
        # exc_info given, not taken from sys.exc_info(): the intake edge calls this handler
        # with an exception raised in the batch's thread, outside any ``except`` block.
        log.error("database refused a value on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(request, 422, "invalid", field="request")

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(request, 500, "internal")
