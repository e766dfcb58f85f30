"""HTTP adapter of Open311 GeoReport v2 开放311接口, under ``/open311/v2/``, in XML and JSON.

Endpoints (``{fmt}`` is ``xml`` or ``json``):

* ``GET discovery.{fmt}``; ``GET services.{fmt}``; ``GET services/{service_code}.{fmt}``
* ``POST requests.{fmt}`` (form-encoded, ``api_key`` required); ``GET requests.{fmt}``;
  ``GET requests/{service_request_id}.{fmt}``; ``GET tokens/{token}.{fmt}``
* ``GET servicerequestupdates.{fmt}``: mySociety's extension (plus a ``service_request_id``
  filter of our own).

The routes are left out of our OpenAPI document (``include_in_schema=False``): the Open311
specification documents them, partners authenticate with API keys rather than user grants
(so they are not in the permission matrix), and errors follow the spec rather than RFC 9457.
Every error under ``/open311/`` (our refusals, request validation, unknown routes and methods,
unexpected failures) is the spec's error list in the requested format, status 404 for an
unknown jurisdiction, service, request or token, 403 for a missing or bad key, 429 (with
``Retry-After``) for a flood and 400 otherwise. The route class installs these handlers for
its own requests only; they run after the request's unit of work has rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from shiyu.domains.open311 import ratelimit, rules, service
from shiyu.domains.open311.formats import error_body, format_of, respond, to_json, to_xml
from shiyu.domains.open311.rules import MAX_IDS, Open311Error, bad, message
from shiyu.kit.errors import DomainError
from shiyu.kit.timeutil import utcnow
from shiyu.platform.web.deps import SessionDep, request_id
from shiyu.platform.web.messages import pick_locale
from shiyu.platform.web.middleware import REFUSAL_FORMATS

log = logging.getLogger("shiyu.open311")
PREFIX = "/open311/v2"


def locale_of(request: Request) -> str:
    return pick_locale(request.headers.get("accept-language"))


def error_response(request: Request, status: int, code: str, params: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    text = message(code, locale_of(request), params or {})
    return respond(format_of(request.url.path), "errors", error_body(status, text), status=status, headers=headers)


async def _on_open311(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Open311Error)
    return error_response(request, exc.status, exc.code, exc.params, exc.headers or None)


async def _on_domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    err = service._as_open311(exc)
    return error_response(request, err.status, err.code, err.params)


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    loc = [str(p) for p in (errors[0].get("loc", ()) if errors else ())]
    field = loc[-1] if loc else "request"
    return error_response(request, 400, "parameter", {"field": field})


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response(request, 404, "route")
    if exc.status_code == 405:
        return error_response(request, 405, "method")
    return error_response(request, 400 if exc.status_code < 500 else exc.status_code, "parameter",
                          {"field": "request"})


async def _on_stale(request: Request, exc: Exception) -> Response:
    return error_response(request, 400, "invalid", {"detail": "concurrent change, retry",
                                                    "detail_zh": "数据已被并发修改，请重试"})


async def _on_any(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal")


HANDLERS: dict[Any, Callable[[Request, Exception], Coroutine[Any, Any, Response]]] = {
    Open311Error: _on_open311,
    DomainError: _on_domain,
    RequestValidationError: _on_validation,
    StarletteHTTPException: _on_http,
    StaleDataError: _on_stale,
    Exception: _on_any,
}


class Open311Route(APIRoute):
    """A route whose errors are Open311's error list: its requests carry their own exception
    handlers (Starlette looks them up in the request scope), and a wrong method is answered
    405 in the same form."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = {**scope, "starlette.exception_handlers": (HANDLERS, {})}
        if self.methods and scope["method"] not in self.methods:
            response = error_response(Request(scope), 405, "method", headers={"Allow": ", ".join(sorted(self.methods))})
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)


router = APIRouter(route_class=Open311Route, include_in_schema=False, tags=["open311"])


def _refusal(path: str, status: int, text: str) -> tuple[bytes, bytes]:
    """A refusal made before routing (the body-size limit), in the spec's error form."""
    fmt = format_of(path)
    body = to_json(error_body(status, text)) if fmt == "json" else to_xml("errors", error_body(status, text))
    return rules.FORMATS[fmt].encode("latin-1"), body


REFUSAL_FORMATS["/open311/"] = _refusal


def fmt_of(fmt: str) -> str:
    if fmt not in rules.FORMATS:
        raise bad("format", fmt=fmt)
    return fmt


def _one(request: Request, name: str, limit: int = 100) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise bad("field_repeated", field=name)
    if not values:
        return None
    if len(values[0]) > limit:
        raise bad("too_long", field=name, max=limit)
    return values[0].strip() or None


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """The form-encoded body as (name, value) pairs, repeats kept; anything else is 400."""
    ctype = request.headers.get("content-type", "").lower()
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise bad("body_form")
    try:
        form = await request.form(max_files=0, max_fields=500)
    except Exception:
        raise bad("body_form") from None
    pairs = []
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise bad("field_type", field=name[:40])
        pairs.append((name, value))
    return pairs


FormPairs = Annotated[list[tuple[str, str]], Depends(form_pairs)]


# --------------------------------------------------------------------------- endpoints


@router.get(PREFIX + "/discovery.{fmt}")
def discovery(fmt: str, request: Request) -> Response:
    f = fmt_of(fmt)
    url = str(request.base_url).rstrip("/") + PREFIX
    return respond(f, "discovery", service.discovery(url))


@router.get(PREFIX + "/services.{fmt}")
def services(fmt: str, request: Request, session: SessionDep) -> Response:
    f = fmt_of(fmt)
    service.jurisdiction(session, _one(request, "jurisdiction_id"))
    return respond(f, "services", service.service_list(session))


@router.get(PREFIX + "/services/{service_code}.{fmt}")
def service_definition(service_code: str, fmt: str, request: Request, session: SessionDep) -> Response:
    f = fmt_of(fmt)
    service.jurisdiction(session, _one(request, "jurisdiction_id"))
    return respond(f, "service_definition", service.service_definition(session, service_code))


@router.post(PREFIX + "/requests.{fmt}")
def create_request(fmt: str, request: Request, pairs: FormPairs, session: SessionDep) -> Response:
    """POST Service Request: a hotline work item with the partner as its channel 渠道."""
    f = fmt_of(fmt)
    rid = request_id(request)
    keys = [v for k, v in pairs if k == "api_key"] or request.query_params.getlist("api_key")
    if len(keys) > 1:
        raise bad("field_repeated", field="api_key")
    key = service.authenticate(session, keys[0] if keys else None, client=client_of(request), request_id=rid)
    partner = service.Partner(name=key.partner, channel=key.partner, source="open311", key=key)
    service.throttle(session, ratelimit.PARTNER, f"key:{key.id}", partner=partner, request_id=rid)
    try:
        data = rules.parse_form(pairs)
        unit = service.jurisdiction(session, data.jurisdiction_id)
        done = service.submit(session, partner=partner, unit=unit, data=data, request_id=rid)
    except DomainError as exc:
        service.refused(session, partner, exc, request_id=rid)
        raise
    body = [{"service_request_id": done.item.number, "token": done.token, "service_notice": done.notice,
             "account_id": None}]
    return respond(f, "service_requests", body)


@router.get(PREFIX + "/requests.{fmt}")
def list_requests(fmt: str, request: Request, session: SessionDep) -> Response:
    f = fmt_of(fmt)
    unit = service.jurisdiction(session, _one(request, "jurisdiction_id"))
    q = request.query_params
    ids = rules.split_list(q.getlist("service_request_id"))
    if len(ids) > MAX_IDS:
        raise bad("too_many_ids", max=MAX_IDS)
    if ids:
        rows = service.list_requests(session, unit, ids=ids, locale=locale_of(request), request_id=request_id(request))
    else:
        codes = rules.split_list(q.getlist("service_code"))
        statuses = rules.parse_statuses(q.getlist("status"))
        start, end = rules.date_window(_one(request, "start_date"), _one(request, "end_date"), utcnow())
        rows = service.list_requests(session, unit, codes=codes, statuses=statuses, start=start, end=end,
                                     locale=locale_of(request), request_id=request_id(request))
    return respond(f, "service_requests", rows)


@router.get(PREFIX + "/requests/{service_request_id}.{fmt}")
def get_request(service_request_id: str, fmt: str, request: Request, session: SessionDep) -> Response:
    f = fmt_of(fmt)
    unit = service.jurisdiction(session, _one(request, "jurisdiction_id"))
    rows = service.get_request(session, unit, service_request_id, locale=locale_of(request),
                               request_id=request_id(request))
    return respond(f, "service_requests", rows)


@router.get(PREFIX + "/tokens/{token}.{fmt}")
def get_token(token: str, fmt: str, request: Request, session: SessionDep) -> Response:
    f = fmt_of(fmt)
    unit = service.jurisdiction(session, _one(request, "jurisdiction_id"))
    return respond(f, "service_requests", service.by_token(session, unit, token, request_id=request_id(request)))


@router.get(PREFIX + "/servicerequestupdates.{fmt}")
def updates(fmt: str, request: Request, session: SessionDep) -> Response:
    """GET Service Request Updates (mySociety): every status change, oldest first."""
    f = fmt_of(fmt)
    unit = service.jurisdiction(session, _one(request, "jurisdiction_id"))
    numbers = rules.split_list(request.query_params.getlist("service_request_id"))
    if len(numbers) > MAX_IDS:
        raise bad("too_many_ids", max=MAX_IDS)
    start, end = rules.date_window(_one(request, "start_date"), _one(request, "end_date"), utcnow())
    rows = service.list_updates(session, unit, start=start, end=end, numbers=numbers, locale=locale_of(request),
                                request_id=request_id(request))
    return respond(f, "service_request_updates", rows)


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route("/open311/{path:path}", methods=_METHODS)
def unknown(path: str, request: Request) -> Response:
    """Anything else under /open311/: 405 for a known resource with another method, else 404."""
    known = [r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is not unknown]
    allowed = sorted({m for r in known if r.path_regex.match(request.url.path) for m in (r.methods or ())})
    if allowed:
        return error_response(request, 405, "method", headers={"Allow": ", ".join(allowed)})
    raise Open311Error(404, "route")
