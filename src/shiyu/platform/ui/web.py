"""The UI edge: Jinja2 environment with i18n, cookie sessions, CSRF, rendering.

Pages are thin adapters over the same services as the API: they get the same
request session (one transaction per request) and the same Principal, so the one
jurisdiction filter and the audit log apply to every page exactly as to the API."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from shiyu.kit.errors import DomainError
from shiyu.kit.pii import mask_address, mask_name, mask_phone, mask_resident_id
from shiyu.platform.authz.principal import Principal
from shiyu.platform.identity import service as identity
from shiyu.platform.ui.i18n import current_locale, gettext_, ngettext_, pick
from shiyu.platform.web.deps import SESSION_COOKIE, SessionDep, csrf_ok, csrf_token, request_id

COOKIE = SESSION_COOKIE
LANG_COOKIE = "shiyu_lang"
#: Each language is named in itself on the switch.
LANGUAGE_NAMES = {"zh-CN": "\u4e2d\u6587", "en": "English"}
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"

_loaders: list[Any] = [FileSystemLoader(str(_HERE / "templates"))]
env = Environment(loader=ChoiceLoader(_loaders), autoescape=select_autoescape(["html"]),
                  extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
env.install_gettext_callables(gettext_, ngettext_, newstyle=True)  # type: ignore[attr-defined]


def register_templates(directory: Path) -> None:
    """Each domain adds its ``templates/`` folder."""
    if not any(getattr(x, "searchpath", None) == [str(directory)] for x in _loaders):
        _loaders.append(FileSystemLoader(str(directory)))


def _local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    return value.astimezone(LOCAL_TZ).strftime(fmt)


env.filters.update(local=_local, mask_phone=lambda v: mask_phone(v) if v else "",
                   mask_name=lambda v: mask_name(v) if v else "",
                   mask_id=lambda v: mask_resident_id(v) if v else "",
                   mask_address=lambda v: mask_address(v) if v else "")


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def _ui_principal(request: Request, session: SessionDep) -> Principal:
    token = request.cookies.get(COOKIE, "")
    principal = identity.principal_from_token(session, token, request_id=request_id(request)) if token else None
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    if not csrf_ok(request, token):
        raise DomainError("CSRF token missing or wrong", code="csrf")
    return principal


UiPrincipal = Annotated[Principal, Depends(_ui_principal)]


def locale_of(request: Request) -> str:
    return pick(request.cookies.get(LANG_COOKIE))


def render(request: Request, template: str, *, principal: Principal | None = None, status: int = 200,
           **ctx: Any) -> HTMLResponse:
    loc = locale_of(request)
    token = current_locale.set(loc)
    try:
        html = env.get_template(template).render(
            request=request, principal=principal, locale=loc, path=request.url.path,
            csrf=csrf_token(request.cookies.get(COOKIE, "")) if principal else "",
            can=(lambda action: principal.can(action)) if principal else (lambda action: False),
            quote=quote, other_language=LANGUAGE_NAMES["en" if loc == "zh-CN" else "zh-CN"], **ctx)
    finally:
        current_locale.reset(token)
    return HTMLResponse(html, status_code=status)


def t(request: Request, message: str) -> str:
    """Translate outside templates (flash messages, form errors)."""
    token = current_locale.set(locale_of(request))
    try:
        return gettext_(message)
    finally:
        current_locale.reset(token)
