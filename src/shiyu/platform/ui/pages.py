"""Shell pages: login, logout, language switch, static files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from shiyu.config import get_settings
from shiyu.platform.identity import service as identity
from shiyu.platform.ui.web import COOKIE, LANG_COOKIE, UiPrincipal, render, t
from shiyu.platform.web.deps import SessionDep, request_id

router = APIRouter(include_in_schema=False)

LOGIN_MESSAGES = {
    "bad_credentials": "Wrong username or password.",
    "locked": "Too many failed logins; the account is locked for 15 minutes.",
    "totp_required": "Enter your one-time code.",
    "bad_totp": "Wrong one-time code.",
    "totp_not_enrolled": "This account must enrol a one-time code first.",
    "inactive": "Wrong username or password.",
}


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=_safe_next(next), username="", error=None)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    totp: Annotated[str, Form(max_length=8)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    outcome = identity.authenticate(session, username=username.strip(), password=password, totp=totp or None,
                                    request_id=request_id(request))
    if not outcome.ok or outcome.token is None:
        message = t(request, LOGIN_MESSAGES.get(outcome.reason, LOGIN_MESSAGES["bad_credentials"]))
        return render(request, "login.html", next=_safe_next(next), username=username, error=message,
                      status=423 if outcome.reason == "locked" else 401)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(COOKIE, outcome.token, max_age=get_settings().token_ttl_minutes * 60, httponly=True,
                    samesite="lax", secure=request.url.scheme == "https", path="/")
    return resp


@router.post("/logout")
def logout(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    identity.logout(session, principal)
    resp = Response(status_code=204, headers={"HX-Redirect": "/login"})
    resp.delete_cookie(COOKIE, path="/")
    return resp


@router.get("/lang/{code}")
def switch_language(code: str, next: str | None = None) -> Response:
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(LANG_COOKIE, "en" if code.lower().startswith("en") else "zh-CN", max_age=365 * 86400,
                    samesite="lax", path="/")
    return resp
