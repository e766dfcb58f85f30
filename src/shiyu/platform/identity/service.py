"""Identity use cases: users, login with lockout and TOTP, bearer tokens, principals."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from shiyu.config import get_settings
from shiyu.kit.db import fetch
from shiyu.kit.errors import Conflict, Invalid, NotFound
from shiyu.kit.pii import PiiError, validate_mobile
from shiyu.kit.timeutil import as_utc, utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action, check_scope
from shiyu.platform.authz.principal import GrantScope, Principal
from shiyu.platform.authz.rules import ROLES, TOTP_REQUIRED
from shiyu.platform.identity.models import AuthToken, Grant, User
from shiyu.platform.identity.passwords import (
    dummy_hash,
    hash_password,
    new_totp_secret,
    password_problem,
    verify_password,
    verify_totp,
)
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{2,63}$")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewUser:
    user: User
    totp_secret: str | None


def create_user(
    session: Session,
    principal: Principal,
    *,
    username: str,
    password: str,
    role: str,
    unit_code: str,
    display_name: str = "",
    phone: str | None = None,
) -> NewUser:
    """Create a user bound to a unit and granted ``role`` over that unit's jurisdiction.

    Department users get the jurisdiction of the administrative unit the department serves.
    Admins are enrolled in TOTP at creation; the secret is returned once.
    """
    check_action(session, principal, "user.write", object_type="user")
    if not USERNAME_RE.match(username or ""):
        raise Invalid("bad username", code="bad_username", field="username")
    if role not in ROLES:
        raise Invalid("unknown role", code="unknown_role", field="role", params={"roles": ", ".join(ROLES)})
    problem = password_problem(password or "")
    if problem:
        raise Invalid("weak password", code=problem, field="password")
    if phone:
        try:
            phone = validate_mobile(phone)
        except PiiError as exc:
            raise Invalid("bad phone", code="phone_format", field="phone") from exc
    unit = units.get(session, unit_code)
    if unit is None:
        raise Invalid("unknown unit", code="unknown_unit", field="unit_code", params={"code": unit_code})
    check_scope(session, principal, "user.write", unit.path, object_type="unit", object_id=unit.code)
    if session.execute(select(User.id).where(User.username == username)).first():
        raise Conflict("username taken", code="username_taken", field="username")
    jurisdiction = units.admin_unit_of(session, unit)
    secret = new_totp_secret() if role in TOTP_REQUIRED else None
    user = User(
        username=username, display_name=display_name or username, password_hash=hash_password(password),
        role=role, unit_code=unit.code, scope_path=unit.path, phone=phone,
        totp_secret=secret, totp_enabled=secret is not None,
    )
    session.add(user)
    session.flush()
    session.add(Grant(user_id=user.id, role=role, jurisdiction_code=jurisdiction.code))
    session.flush()
    audit.record(session, principal, "user.create", object_type="user", object_id=user.id,
                 scope_path=unit.path,
                 detail={"username": username, "role": role, "unit": unit.code, "jurisdiction": jurisdiction.code})
    return NewUser(user, secret)


def load_principal(session: Session, user: User, *, request_id: str | None = None,
                   token_id: int | None = None) -> Principal:
    rows = session.execute(
        select(Grant.role, Grant.jurisdiction_code, Unit.path)
        .join(Unit, Unit.code == Grant.jurisdiction_code)
        .where(Grant.user_id == user.id)
        .order_by(Grant.id)
    ).all()
    grants = tuple(GrantScope(role=r, jurisdiction_code=c, path=p) for r, c, p in rows)
    return Principal(user_id=user.id, username=user.username, role=user.role, unit_code=user.unit_code,
                     grants=grants, request_id=request_id, token_id=token_id)


@dataclass(frozen=True)
class LoginOutcome:
    ok: bool
    reason: str  # ok | bad_credentials | locked | totp_required | bad_totp | inactive
    token: str | None = None
    expires_in: int = 0
    principal: Principal | None = None


def authenticate(
    session: Session, *, username: str, password: str, totp: str | None, request_id: str | None
) -> LoginOutcome:
    """Check credentials; on success issue a token. Failures are counted and audited in
    this transaction (the caller commits either way): 5 consecutive failures lock the
    account for 15 minutes, and a locked account refuses even the right password."""
    settings = get_settings()
    now = utcnow()
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()

    def fail(reason: str, u: User | None) -> LoginOutcome:
        p = load_principal(session, u, request_id=request_id) if u else None
        audit.record(session, p, "auth.login", object_type="user", object_id=u.id if u else None,
                     result="failed", scope_path=u.scope_path if u else None, request_id=request_id,
                     detail={"reason": reason}, actor=username[:64] if u is None else None)
        return LoginOutcome(False, reason)

    def count_failure(u: User) -> None:
        """Consecutive failures (password or one-time code) lock the account."""
        u.failed_logins += 1
        if u.failed_logins >= settings.lockout_threshold:
            u.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            u.failed_logins = 0
            audit.record(session, None, "auth.lockout", object_type="user", object_id=u.id,
                         scope_path=u.scope_path, actor=u.username, request_id=request_id,
                         detail={"minutes": settings.lockout_minutes})

    if user is None:
        verify_password(dummy_hash(), password)
        return fail("bad_credentials", None)
    if user.locked_until is not None and as_utc(user.locked_until) > now:
        return fail("locked", user)
    if not verify_password(user.password_hash, password):
        count_failure(user)
        return fail("bad_credentials", user)
    # Only after the password: a disabled account must not be told apart from a wrong password.
    if not user.is_active:
        return fail("inactive", user)
    needs_totp = user.totp_enabled or user.role in TOTP_REQUIRED
    if needs_totp:
        if not user.totp_secret:
            return fail("totp_not_enrolled", user)
        if not totp:
            return fail("totp_required", user)
        if not verify_totp(user.totp_secret, totp):
            count_failure(user)
            return fail("bad_totp", user)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    token = secrets.token_urlsafe(32)
    ttl = timedelta(minutes=settings.token_ttl_minutes)
    row = AuthToken(user_id=user.id, token_hash=_token_hash(token), created_at=now, expires_at=now + ttl)
    session.add(row)
    session.flush()
    principal = load_principal(session, user, request_id=request_id, token_id=row.id)
    audit.record(session, principal, "auth.login", object_type="user", object_id=user.id,
                 scope_path=user.scope_path)
    return LoginOutcome(True, "ok", token, int(ttl.total_seconds()), principal)


_TOKEN_PRINCIPAL = (
    select(AuthToken.id, AuthToken.revoked_at, AuthToken.expires_at, User.id.label("user_id"), User.username,
           User.role, User.unit_code, User.is_active, Grant.role.label("grant_role"), Grant.jurisdiction_code,
           Unit.path)
    .join(User, User.id == AuthToken.user_id)
    .outerjoin(Grant, Grant.user_id == User.id)
    .outerjoin(Unit, Unit.code == Grant.jurisdiction_code)
    .where(AuthToken.token_hash == bindparam("token_hash"))
    .order_by(Grant.id)
)


def principal_from_token(session: Session, token: str, *, request_id: str | None) -> Principal | None:
    """The principal of a live token: the token, its user and the user's grants in one
    query (every API request asks this; a batch of new items once per token)."""
    now = utcnow()
    rows = fetch(session, _TOKEN_PRINCIPAL, {"token_hash": _token_hash(token)})
    if not rows:
        return None
    first = rows[0]
    if first.revoked_at is not None or as_utc(first.expires_at) <= now or not first.is_active:
        return None
    grants = tuple(GrantScope(role=r.grant_role, jurisdiction_code=r.jurisdiction_code, path=r.path)
                   for r in rows if r.grant_role is not None and r.path is not None)
    return Principal(user_id=first.user_id, username=first.username, role=first.role, unit_code=first.unit_code,
                     grants=grants, request_id=request_id, token_id=first.id)


def logout(session: Session, principal: Principal) -> None:
    if principal.token_id is None:
        return
    tok = session.get(AuthToken, principal.token_id)
    if tok is not None and tok.revoked_at is None:
        tok.revoked_at = utcnow()
        audit.record(session, principal, "auth.logout", object_type="user", object_id=principal.user_id)


def get_user(session: Session, principal: Principal, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        check_action(session, principal, "user.read", object_type="user")
        raise NotFound("user not found", params={"what": "user", "id": str(user_id)})
    check_scope(session, principal, "user.read", user.scope_path, object_type="user", object_id=user_id)
    return user


def start_totp_enrollment(session: Session, principal: Principal) -> str:
    user = session.get(User, principal.user_id) if principal.user_id else None
    if user is None:
        raise NotFound("user not found")
    if user.totp_enabled:
        raise Conflict("TOTP already enabled", code="totp_already_enabled")
    user.totp_secret = new_totp_secret()
    audit.record(session, principal, "auth.totp_enroll_start", object_type="user", object_id=user.id,
                 scope_path=user.scope_path)
    return user.totp_secret


def confirm_totp(session: Session, principal: Principal, code: str) -> None:
    user = session.get(User, principal.user_id) if principal.user_id else None
    if user is None or not user.totp_secret:
        raise Conflict("no TOTP enrollment in progress", code="totp_not_started")
    if not verify_totp(user.totp_secret, code):
        raise Invalid("wrong code", code="bad_totp", field="code")
    user.totp_enabled = True
    audit.record(session, principal, "auth.totp_enabled", object_type="user", object_id=user.id,
                 scope_path=user.scope_path)
