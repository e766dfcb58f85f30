"""The citizens' public pages 市民诉求页面: report an issue and follow it, without logging in.

Built on the Open311 adapter itself: a report goes through ``service.submit`` exactly like a
partner's POST requests, as the internal partner "citizen-web" (channel 市民网页), limited per
client address instead of per key. The reporter gets a tracking token 查询码; following an
issue shows its public status, the public progress texts and the reply 答复. Before a report
is sent, open requests of the same service nearby are listed ("this may be the same issue",
as FixMyStreet does).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from shiyu.domains.open311 import ratelimit, rules, service
from shiyu.domains.open311.api import client_of, form_pairs
from shiyu.domains.open311.rules import Open311Error, message
from shiyu.kit.errors import DomainError
from shiyu.platform.ui.web import locale_of, register_templates, render
from shiyu.platform.web.deps import SessionDep, request_id

router = APIRouter(include_in_schema=False)
register_templates(Path(__file__).parent / "templates")

#: Form fields the page sends on to the adapter (everything else is dropped).
FIELDS = ("service_code", "jurisdiction_id", "lat", "long", "address_string", "description", "first_name",
          "last_name", "phone", "email")
_LOCAL_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


def _api_locale(request: Request) -> str:
    return "en" if locale_of(request) == "en" else "zh-CN"


def _error_text(request: Request, exc: DomainError) -> str:
    err = exc if isinstance(exc, Open311Error) else service._as_open311(exc)
    return message(err.code, _api_locale(request), err.params)


def _services(session: Any) -> list[service.Service]:
    return service.services(session)


def _jurisdiction(session: Any, code: str | None) -> Any:
    try:
        return service.jurisdiction(session, code or None)
    except Open311Error:
        return service.jurisdiction(session, None)


@router.get("/citizen/report")
def report_form(request: Request, session: SessionDep) -> Response:
    unit = _jurisdiction(session, request.query_params.get("jurisdiction_id"))
    return render(request, "open311/report.html", services=_services(session), values={}, error=None, unit=unit,
                  chosen=None, answered={}, defaults=service.definitions()[0])


@router.get("/citizen/attributes")
def attributes(request: Request, session: SessionDep) -> Response:
    """The chosen service's questions (HTMX fragment)."""
    code = request.query_params.get("service_code") or ""
    chosen = next((s for s in _services(session) if s.code == code), None)
    return render(request, "open311/_attributes.html", chosen=chosen, answered={}, defaults=service.definitions()[0])


@router.get("/citizen/nearby")
def nearby(request: Request, session: SessionDep) -> Response:
    """Open requests of the same service within 200 m from the last 30 days (HTMX fragment)."""
    q = request.query_params
    rows: list[dict[str, Any]] = []
    try:
        lat, lon = float(q.get("lat") or "nan"), float(q.get("long") or "nan")
        code = q.get("service_code") or ""
        if code and -90 <= lat <= 90 and -180 <= lon <= 180:
            unit = _jurisdiction(session, q.get("jurisdiction_id"))
            rows = service.nearby(session, unit, code, lon, lat, locale=_api_locale(request),
                                  request_id=request_id(request))
    except ValueError:
        rows = []
    return render(request, "open311/_nearby.html", rows=rows, asked=bool(q.get("service_code")))


def _page_pairs(pairs: list[tuple[str, str]], chosen: service.Service | None) -> list[tuple[str, str]]:
    """The adapter's form from the page's: the page's own fields and the service's attributes;
    a ``datetime-local`` answer is read in the city's time (the page says so)."""
    datetimes = {a.code for a in chosen.definition.attributes if a.datatype == "datetime"} if chosen else set()
    out = []
    for name, value in pairs:
        if name in FIELDS:
            out.append((name, value))
        elif name.startswith("attribute["):
            code = name[len("attribute["):].split("]")[0]
            if code in datetimes and _LOCAL_MINUTE.match(value.strip()):
                value = value.strip() + (":00" if value.strip().count(":") == 1 else "") + "+08:00"
            out.append((name, value))
    return out


@router.post("/citizen/report")
def report_submit(request: Request, pairs: Annotated[list[tuple[str, str]], Depends(form_pairs)],
                  session: SessionDep) -> Response:
    values = {k: v for k, v in pairs if k in FIELDS}
    chosen = next((s for s in _services(session) if s.code == values.get("service_code")), None)
    unit = _jurisdiction(session, values.get("jurisdiction_id"))
    rid = request_id(request)
    headers = {}
    try:
        service.throttle(session, ratelimit.CITIZEN, f"ip:{client_of(request)}", partner=service.CITIZEN_WEB,
                         request_id=rid)
        data = rules.parse_form(_page_pairs(pairs, chosen))
        unit = service.jurisdiction(session, data.jurisdiction_id)
        done = service.submit(session, partner=service.CITIZEN_WEB, unit=unit, data=data, request_id=rid)
    except DomainError as exc:
        session.rollback()  # nothing of a refused report is kept (the audited refusals are)
        if isinstance(exc, Open311Error):
            headers = exc.headers
        status = 429 if exc.status == 429 else 422
        answered = {k[len("attribute["):].split("]")[0]: v for k, v in pairs if k.startswith("attribute[")}
        html = render(request, "open311/report.html", services=_services(session), values=values,
                      error=_error_text(request, exc), unit=unit, chosen=chosen, answered=answered,
                      defaults=service.definitions()[0], status=status)
        html.headers.update(headers)
        return html
    return render(request, "open311/submitted.html", token=done.token, number=done.item.number, notice=done.notice)


@router.get("/citizen/follow")
def follow(request: Request, session: SessionDep) -> HTMLResponse:
    token = (request.query_params.get("token") or "").strip()
    if not token:
        return render(request, "open311/follow.html", token="", found=None)
    found = service.follow(session, token, locale=_api_locale(request), request_id=request_id(request))
    return render(request, "open311/follow.html", token=token, found=found, status=200 if found else 404)
