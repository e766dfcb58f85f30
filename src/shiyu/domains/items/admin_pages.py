"""Admin pages for the catalogues 配置: taxonomy, deadlines, holidays. They call the
same functions as the catalogue API, so checks and audit are identical."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from shiyu.domains.items import admin_api
from shiyu.domains.items.models import Category, Holiday, SlaRule
from shiyu.kit.errors import DomainError
from shiyu.platform.audit.guard import check_action
from shiyu.platform.ui.web import UiPrincipal, render
from shiyu.platform.web.deps import SessionDep

router = APIRouter(include_in_schema=False)


def _err(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ValidationError):
        msg = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
    elif isinstance(exc, DomainError):
        msg = exc.detail or exc.code
    else:
        msg = str(exc)
    return render(request, "items/_error.html", message=msg, field=getattr(exc, "field", None), status=422)


@router.get("/admin/taxonomy")
def taxonomy(request: Request, session: SessionDep, principal: UiPrincipal, kind: str = "event") -> Response:
    check_action(session, principal, "item.configure", object_type="category")
    rows = session.execute(select(Category).where(Category.kind == kind).order_by(Category.code)).scalars().all()
    return render(request, "items/admin_taxonomy.html", principal=principal, rows=rows, kind=kind)


@router.post("/admin/taxonomy")
async def taxonomy_add(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    form = await request.form()
    try:
        body = admin_api.CategoryIn(code=str(form.get("code") or "").strip(), name=str(form.get("name") or "").strip(),
                                    kind=str(form.get("kind") or ""), parent_code=str(form.get("parent_code") or "")
                                    or None, public=form.get("public") == "on")
        admin_api.add_category(body, session, principal)
    except (ValidationError, DomainError) as exc:
        return _err(request, exc)
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.post("/admin/taxonomy/{code}/toggle")
def taxonomy_toggle(code: str, request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    check_action(session, principal, "item.configure", object_type="category")
    cat = session.get(Category, code)
    try:
        admin_api.patch_category(code, admin_api.CategoryPatch(active=not (cat.active if cat else True)), session,
                                 principal)
    except DomainError as exc:
        return _err(request, exc)
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.get("/admin/deadlines")
def deadlines(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    check_action(session, principal, "item.configure", object_type="sla_rule")
    rows = session.execute(select(SlaRule).order_by(SlaRule.kind, SlaRule.category, SlaRule.priority,
                                                    SlaRule.step)).scalars().all()
    return render(request, "items/admin_deadlines.html", principal=principal, rows=rows, steps=admin_api.STEPS)


@router.post("/admin/deadlines")
async def deadlines_set(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    form = await request.form()
    vals: dict[str, Any] = {k: (str(form.get(k) or "").strip() or None) for k in ("kind", "category", "priority",
                                                                                  "step", "duration")}
    try:
        admin_api.put_sla(admin_api.SlaRuleIO(**vals), session, principal)
    except (ValidationError, DomainError) as exc:
        return _err(request, exc)
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.get("/admin/holidays")
def holidays(request: Request, session: SessionDep, principal: UiPrincipal, year: int | None = None) -> Response:
    check_action(session, principal, "item.configure", object_type="holiday")
    year = year or date.today().year
    rows = session.execute(select(Holiday).where(Holiday.day >= date(year, 1, 1), Holiday.day <= date(year, 12, 31))
                           .order_by(Holiday.day)).scalars().all()
    return render(request, "items/admin_holidays.html", principal=principal, rows=rows, year=year)


@router.post("/admin/holidays")
async def holidays_set(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    form = await request.form()
    try:
        body = admin_api.HolidayIO(day=str(form.get("day") or ""), is_workday=form.get("is_workday") == "on",
                                   name=str(form.get("name") or ""))
        admin_api.put_holiday(body, session, principal)
    except (ValidationError, DomainError) as exc:
        return _err(request, exc)
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.post("/admin/holidays/{day}/delete")
def holidays_delete(day: date, request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    try:
        admin_api.delete_holiday(day, session, principal)
    except DomainError as exc:
        return _err(request, exc)
    return Response(status_code=204, headers={"HX-Refresh": "true"})
