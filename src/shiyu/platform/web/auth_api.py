"""HTTP adapter of identity: tokens, me, TOTP, users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from shiyu.kit.errors import Invalid, Locked, Unauthorized
from shiyu.kit.pii import mask_phone
from shiyu.platform.audit.guard import check_action
from shiyu.platform.authz.rules import ACTIONS
from shiyu.platform.authz.scope import scope
from shiyu.platform.identity import service
from shiyu.platform.identity.models import User
from shiyu.platform.identity.passwords import totp_uri
from shiyu.platform.identity.schemas import (
    GrantRead,
    Me,
    TokenResponse,
    TotpConfirm,
    TotpEnrollment,
    UserCreate,
    UserCreated,
    UserRead,
)
from shiyu.platform.web.deps import PrincipalDep, SessionDep, request_id
from shiyu.platform.web.problems import domain_problem

router = APIRouter(prefix="/api/v1", tags=["auth"])


def user_read(u: User) -> UserRead:
    r = UserRead.model_validate(u)
    r.phone = mask_phone(u.phone) if u.phone else None
    return r


@router.post("/auth/token", response_model=TokenResponse, summary="Log in (OAuth2 password form)")
def token(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    totp: Annotated[str | None, Form(max_length=8, description="one-time code 动态口令")] = None,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenResponse | JSONResponse:
    outcome = service.authenticate(session, username=username, password=password, totp=totp,
                                   request_id=request_id(request))
    if not outcome.ok:
        # The failure counter and its audit entry are kept: return (the edge commits), don't raise.
        exc = Locked("locked", code="locked") if outcome.reason == "locked" else Unauthorized(
            outcome.reason, code=outcome.reason if outcome.reason.startswith("totp") or outcome.reason in (
                "bad_totp", "inactive") else "bad_credentials")
        return domain_problem(request, exc)
    assert outcome.token is not None
    return TokenResponse(access_token=outcome.token, expires_in=outcome.expires_in)


@router.post("/auth/logout", status_code=204, summary="Revoke the current token")
def logout(session: SessionDep, principal: PrincipalDep) -> None:
    service.logout(session, principal)


@router.get("/auth/me", response_model=Me)
def me(principal: PrincipalDep) -> Me:
    return Me(
        user_id=principal.user_id, username=principal.username, role=principal.role,
        unit_code=principal.unit_code,
        grants=[GrantRead(role=g.role, jurisdiction_code=g.jurisdiction_code) for g in principal.grants],
        actions=[a for a in ACTIONS if principal.can(a)],
    )


@router.post("/auth/totp/enroll", response_model=TotpEnrollment)
def totp_enroll(session: SessionDep, principal: PrincipalDep) -> TotpEnrollment:
    secret = service.start_totp_enrollment(session, principal)
    return TotpEnrollment(secret=secret, otpauth_uri=totp_uri(secret, principal.username))


@router.post("/auth/totp/confirm", status_code=204)
def totp_confirm(body: TotpConfirm, session: SessionDep, principal: PrincipalDep) -> None:
    service.confirm_totp(session, principal, body.code)


@router.get("/users", response_model=list[UserRead], tags=["users"])
def list_users(
    session: SessionDep,
    principal: PrincipalDep,
    unit: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[UserRead]:
    check_action(session, principal, "user.read", object_type="user")
    stmt = scope(select(User), principal, "user.read", User.scope_path)
    if unit:
        stmt = stmt.where(User.unit_code == unit)
    rows = session.execute(stmt.order_by(User.username).limit(limit).offset(offset)).scalars()
    return [user_read(u) for u in rows]


@router.get("/users/{user_id}", response_model=UserRead, tags=["users"])
def get_user(user_id: int, session: SessionDep, principal: PrincipalDep) -> UserRead:
    if user_id < 1 or user_id > 2**31 - 1:  # an INTEGER column
        raise Invalid("bad id", code="invalid", field="user_id")
    return user_read(service.get_user(session, principal, user_id))


@router.post("/users", response_model=UserCreated, status_code=201, tags=["users"])
def create_user(body: UserCreate, session: SessionDep, principal: PrincipalDep) -> UserCreated:
    new = service.create_user(
        session, principal, username=body.username, password=body.password, role=body.role,
        unit_code=body.unit_code, display_name=body.display_name, phone=body.phone,
    )
    return UserCreated(
        user=user_read(new.user), totp_secret=new.totp_secret,
        totp_uri=totp_uri(new.totp_secret, new.user.username) if new.totp_secret else None,
    )
