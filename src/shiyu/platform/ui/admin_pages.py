"""Admin pages 系统管理: users, roles and grants (the catalogues live with the items domain)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from shiyu.kit.errors import DomainError
from shiyu.platform.audit.guard import check_action
from shiyu.platform.authz.rules import ROLE_ACTIONS, ROLES
from shiyu.platform.authz.scope import scope
from shiyu.platform.identity import service as identity
from shiyu.platform.identity.models import Grant, User
from shiyu.platform.jobs.scheduler import last_runs
from shiyu.platform.ui.web import UiPrincipal, render, t
from shiyu.platform.web.deps import SessionDep

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def admin_home(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    """The admin menu and, for those who configure or audit the system, the scheduled
    jobs' last runs 定时任务 (``job_runs``)."""
    jobs = None
    if principal.can("item.configure") or principal.can("audit.read"):
        jobs = last_runs(session)
    return render(request, "admin/home.html", principal=principal, jobs=jobs)


@router.get("/admin/users")
def users_page(request: Request, session: SessionDep, principal: UiPrincipal, q: str = "") -> Response:
    check_action(session, principal, "user.read", object_type="user")
    stmt = scope(select(User), principal, "user.read", User.scope_path)
    if q:
        stmt = stmt.where(User.username.like(f"%{q[:50]}%"))
    users = session.execute(stmt.order_by(User.username).limit(300)).scalars().all()
    grants: dict[int, list[Grant]] = {}
    if users:
        for g in session.execute(select(Grant).where(Grant.user_id.in_([u.id for u in users]))).scalars():
            grants.setdefault(g.user_id, []).append(g)
    return render(request, "admin/users.html", principal=principal, users=users, grants=grants, roles=ROLES,
                  role_actions=ROLE_ACTIONS, q=q, errors={}, values={})


@router.post("/admin/users")
async def create_user(request: Request, session: SessionDep, principal: UiPrincipal) -> Response:
    form = await request.form()
    values = {k: str(form.get(k) or "").strip() for k in ("username", "password", "role", "unit_code",
                                                             "display_name", "phone")}
    try:
        new = identity.create_user(session, principal, username=values["username"], password=values["password"],
                                   role=values["role"], unit_code=values["unit_code"],
                                   display_name=values["display_name"], phone=values["phone"] or None)
    except DomainError as exc:
        from shiyu.platform.web.messages import detail_with

        loc = "en" if request.cookies.get("shiyu_lang", "").startswith("en") else "zh-CN"
        field = {"unit": "unit_code"}.get(exc.field or "", exc.field or "username")
        return render(request, "admin/_user_form.html", principal=principal, roles=ROLES, values=values,
                      errors={field: detail_with(exc.code, loc, exc.params, exc.detail)}, status=422)
    msg = t(request, "User created.")
    if new.totp_secret:
        msg += " TOTP: " + new.totp_secret
    return Response(status_code=204, headers={"HX-Redirect": "/admin/users?q=" + new.user.username})
