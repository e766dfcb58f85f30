"""Login and tokens 登录与令牌: Argon2id passwords, lockout, TOTP 动态口令, expiry,
logout, ``/auth/me`` and the audit trail of every login attempt.

Lockout and TOTP tests use users of their own (never the shared demo accounts), each
with a unique username, so nothing here can lock out an account another test uses.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, update

from shiyu.config import get_settings
from shiyu.demo.city import DEMO_PASSWORD
from shiyu.kit.timeutil import as_utc, utcnow
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.rules import ACTIONS, ROLE_ACTIONS
from shiyu.platform.identity import service as identity
from shiyu.platform.identity.models import AuthToken, User

TOWN = "320102001000"
PASSWORD = "Auth#Test2026"
TOKEN_URL = "/api/v1/auth/token"


# --------------------------------------------------------------------------- helpers


def uniq(prefix: str) -> str:
    """A unique name of letters only: hex digits could form a run that reads as a phone number."""
    return prefix + "_" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def new_user(db: Any, role: str = "dispatcher", unit: str = TOWN, prefix: str = "auth") -> tuple[str, str | None]:
    """Create a user of our own; returns (username, TOTP secret for admins)."""
    username = uniq(prefix)
    with db.unit_of_work() as s:
        made = identity.create_user(s, Principal.system(), username=username, password=PASSWORD, role=role,
                                    unit_code=unit, display_name="测试用户")
    return username, made.totp_secret


def user_row(db: Any, username: str) -> User:
    with db.unit_of_work(write=False) as s:
        return s.execute(select(User).where(User.username == username)).scalar_one()


def set_user(db: Any, username: str, **values: Any) -> None:
    with db.unit_of_work() as s:
        s.execute(update(User).where(User.username == username).values(**values))


def audit_rows(db: Any, **where: Any) -> list[AuditEntry]:
    with db.unit_of_work(write=False) as s:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for col, val in where.items():
            stmt = stmt.where(getattr(AuditEntry, col) == val)
        return list(s.execute(stmt).scalars())


def post_login(client: Any, username: str, password: str = PASSWORD, totp: str | None = None,
               **headers: str) -> Any:
    form = {"username": username, "password": password}
    if totp is not None:
        form["totp"] = totp
    return client.post(TOKEN_URL, data=form, headers=headers)


def bearer(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def wrong_code(secret: str) -> str:
    """A six-digit code valid at no time step near now."""
    t = pyotp.TOTP(secret)
    valid = {t.at(time.time() + k * 30) for k in range(-3, 4)}
    n = 0
    while f"{n:06d}" in valid:
        n += 1
    return f"{n:06d}"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"urn:shiyu:problem:{code}"
    for member in ("title", "detail", "instance", "request_id"):
        assert body[member], member
    assert body["request_id"] == r.headers["x-request-id"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    return body


# --------------------------------------------------------------------------- login


def test_settings_match_the_contract():
    s = get_settings()
    assert (s.lockout_threshold, s.lockout_minutes) == (5, 15)
    assert s.token_ttl_minutes >= 1


def test_login_returns_bearer_token_with_ttl(client, db):
    username, _ = new_user(db)
    before = utcnow()
    r = post_login(client, username, **{"X-Request-ID": "login-ok-1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    ttl = get_settings().token_ttl_minutes
    assert body["expires_in"] == ttl * 60
    token = body["access_token"]
    assert len(token) >= 32

    user = user_row(db, username)
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert user.last_login_at is not None and as_utc(user.last_login_at) >= before - timedelta(seconds=1)
    with db.unit_of_work(write=False) as s:
        rows = list(s.execute(select(AuthToken).where(AuthToken.user_id == user.id)).scalars())
    assert len(rows) == 1
    row = rows[0]
    # Only the SHA-256 of the token is stored.
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_hash
    assert as_utc(row.expires_at) - as_utc(row.created_at) == timedelta(minutes=ttl)
    assert row.revoked_at is None

    ok = audit_rows(db, action="auth.login", object_id=str(user.id))
    assert [(e.result, e.actor, e.request_id) for e in ok] == [("ok", username, "login-ok-1")]

    me = client.get("/api/v1/auth/me", headers=bearer(r))
    assert me.status_code == 200
    assert me.json()["username"] == username


def test_password_is_checked(client, db):
    username, _ = new_user(db)
    body = assert_problem(post_login(client, username, PASSWORD + "x"), 401, "bad_credentials")
    assert body["instance"] == TOKEN_URL
    assert_problem(post_login(client, username, PASSWORD.lower()), 401, "bad_credentials")
    assert_problem(post_login(client, username.upper(), PASSWORD), 401, "bad_credentials")
    assert post_login(client, username).status_code == 200


def test_unknown_username_looks_like_a_wrong_password(client, db):
    username, _ = new_user(db)
    ghost = uniq("ghost")
    for lang in ("zh-CN", "en"):
        wrong = post_login(client, username, "Wrong#Pass1", **{"Accept-Language": lang, "X-Request-ID": f"bad-{lang}"})
        unknown = post_login(client, ghost, "Wrong#Pass1", **{"Accept-Language": lang})
        a, b = assert_problem(wrong, 401, "bad_credentials"), assert_problem(unknown, 401, "bad_credentials")
        strip = ("request_id",)
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
        assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]
        assert set(wrong.headers) - {"x-request-id", "content-length"} == \
            set(unknown.headers) - {"x-request-id", "content-length"}
    # Both failures are audited and committed although the request failed.
    user = user_row(db, username)
    known = audit_rows(db, action="auth.login", object_id=str(user.id))
    assert [e.result for e in known] == ["failed", "failed"]
    assert all(e.detail.get("reason") == "bad_credentials" for e in known)
    assert [e.request_id for e in known] == ["bad-zh-CN", "bad-en"]
    ghost_rows = audit_rows(db, action="auth.login", actor=ghost)
    assert [e.result for e in ghost_rows] == ["failed", "failed"]
    assert all(e.object_id is None and e.actor_id is None for e in ghost_rows)


def test_failed_logins_are_visible_to_the_city_auditor(client, db, login):
    ghost = uniq("ghost")
    username, _ = new_user(db)
    assert post_login(client, ghost, "Wrong#Pass1").status_code == 401
    assert post_login(client, username, "Wrong#Pass1").status_code == 401
    auditor = login("auditor_city")
    for actor in (ghost, username):
        r = client.get("/api/v1/audit", params={"action": "auth.login", "actor": actor, "result": "failed"},
                       headers=auditor)
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 1, actor


def test_lockout_after_five_consecutive_failures(client, db):
    username, _ = new_user(db)
    for i in range(4):
        assert_problem(post_login(client, username, f"Wrong#Pass{i}"), 401, "bad_credentials")
        assert user_row(db, username).failed_logins == i + 1
        assert user_row(db, username).locked_until is None
    started = utcnow()
    assert_problem(post_login(client, username, "Wrong#Pass5"), 401, "bad_credentials")
    user = user_row(db, username)
    assert user.locked_until is not None
    until = as_utc(user.locked_until)
    assert started + timedelta(minutes=15) - timedelta(seconds=5) <= until <= utcnow() + timedelta(minutes=15)

    # Locked: even the right password is refused, in both languages, with 423.
    body = assert_problem(post_login(client, username, PASSWORD), 423, "locked")
    assert "锁定" in body["title"]
    en = assert_problem(post_login(client, username, PASSWORD, **{"Accept-Language": "en"}), 423, "locked")
    assert en["title"] == "Account locked"
    assert_problem(post_login(client, username, "Wrong#Pass6"), 423, "locked")
    assert as_utc(user_row(db, username).locked_until) == until  # attempts while locked don't extend it

    uid = str(user.id)
    entries = audit_rows(db, action="auth.login", object_id=uid)
    assert [e.result for e in entries] == ["failed"] * 8
    assert [e.detail["reason"] for e in entries] == ["bad_credentials"] * 5 + ["locked"] * 3
    assert len(audit_rows(db, action="auth.lockout", object_id=uid)) == 1

    # When the 15 minutes are over the right password works again and clears the lock.
    set_user(db, username, locked_until=utcnow() - timedelta(seconds=1))
    assert post_login(client, username).status_code == 200
    user = user_row(db, username)
    assert user.locked_until is None and user.failed_logins == 0


def test_still_locked_one_minute_before_the_end(client, db):
    username, _ = new_user(db)
    for i in range(5):
        post_login(client, username, f"Wrong#Pass{i}")
    set_user(db, username, locked_until=utcnow() + timedelta(minutes=1))
    assert_problem(post_login(client, username), 423, "locked")


def test_success_resets_the_failure_counter(client, db):
    username, _ = new_user(db)
    for _round in range(3):
        for i in range(4):
            assert_problem(post_login(client, username, f"Wrong#Pass{i}"), 401, "bad_credentials")
        assert user_row(db, username).failed_logins == 4
        assert post_login(client, username).status_code == 200
        assert user_row(db, username).failed_logins == 0
    assert user_row(db, username).locked_until is None


def test_lockout_is_per_account(client, db):
    victim, _ = new_user(db)
    bystander, _ = new_user(db)
    for i in range(5):
        post_login(client, victim, f"Wrong#Pass{i}")
    assert_problem(post_login(client, victim), 423, "locked")
    assert post_login(client, bystander).status_code == 200


def test_disabled_account(client, db):
    username, _ = new_user(db)
    headers = bearer(post_login(client, username))
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    set_user(db, username, is_active=False)
    # Its live token stops working at once.
    assert_problem(client.get("/api/v1/auth/me", headers=headers), 401, "unauthorized")
    # A wrong password does not reveal that the account exists and is disabled ...
    ghost = uniq("ghost")
    a = assert_problem(post_login(client, username, "Wrong#Pass1"), 401, "bad_credentials")
    b = assert_problem(post_login(client, ghost, "Wrong#Pass1"), 401, "bad_credentials")
    assert a["detail"] == b["detail"]
    # ... only the right one does, and still no token.
    r = post_login(client, username)
    assert_problem(r, 401, "inactive")
    assert "access_token" not in r.json()


def test_form_validation_on_token(client):
    r = client.post(TOKEN_URL, data={"password": "x"})
    assert_problem(r, 422, "invalid")
    assert r.json()["field"] == "username"
    r = client.post(TOKEN_URL, data={"username": "nobody_here", "password": "x", "grant_type": "client_credentials"})
    assert r.status_code == 422 and r.json()["field"] == "grant_type"


# --------------------------------------------------------------------------- TOTP


def test_demo_admin_needs_a_code(client, db, login):
    before = user_row(db, "admin").failed_logins
    r = post_login(client, "admin", DEMO_PASSWORD)
    body = assert_problem(r, 401, "totp_required")
    assert body["detail"] == "请输入动态口令。"
    assert post_login(client, "admin", DEMO_PASSWORD, **{"Accept-Language": "en"}).json()["detail"] == \
        "Enter your one-time code."
    assert user_row(db, "admin").failed_logins == before  # a missing code is not a failed password
    # The conftest login gives the code and gets in.
    assert client.get("/api/v1/auth/me", headers=login("admin")).json()["role"] == "admin"


def test_admin_totp_required_and_checked(client, db):
    username, secret = new_user(db, role="admin", unit="320100000000")
    assert secret, "admins are enrolled in TOTP at creation"
    assert user_row(db, username).totp_enabled
    assert_problem(post_login(client, username), 401, "totp_required")
    assert_problem(post_login(client, username, totp=""), 401, "totp_required")
    assert_problem(post_login(client, username, totp=wrong_code(secret)), 401, "bad_totp")
    assert_problem(post_login(client, username, totp="abcdef"), 401, "bad_totp")
    # The right code with a wrong password is still a wrong password.
    assert_problem(post_login(client, username, "Wrong#Pass1", totp=pyotp.TOTP(secret).now()), 401,
                   "bad_credentials")
    r = post_login(client, username, totp=pyotp.TOTP(secret).now())
    assert r.status_code == 200, r.text
    reasons = [e.detail.get("reason") for e in audit_rows(db, action="auth.login",
                                                            object_id=str(user_row(db, username).id))]
    assert reasons == ["totp_required", "totp_required", "bad_totp", "bad_totp", "bad_credentials", None]


def test_wrong_codes_count_towards_lockout(client, db):
    username, secret = new_user(db, role="admin", unit="320100000000")
    assert secret
    for _ in range(5):
        assert_problem(post_login(client, username, totp=wrong_code(secret)), 401, "bad_totp")
    assert_problem(post_login(client, username, totp=pyotp.TOTP(secret).now()), 423, "locked")


def test_totp_enrolment_makes_codes_mandatory(client, db):
    username, secret = new_user(db)
    assert secret is None
    headers = bearer(post_login(client, username))  # no code needed yet

    r = client.post("/api/v1/auth/totp/enroll", headers=headers)
    assert r.status_code == 200, r.text
    enrol = r.json()
    secret = enrol["secret"]
    assert len(secret) >= 16
    assert enrol["otpauth_uri"].startswith("otpauth://totp/")
    assert username in enrol["otpauth_uri"] and f"secret={secret}" in enrol["otpauth_uri"]
    # Started, not confirmed: logging in without a code still works.
    assert not user_row(db, username).totp_enabled
    assert post_login(client, username).status_code == 200

    r = client.post("/api/v1/auth/totp/confirm", json={"code": wrong_code(secret)}, headers=headers)
    body = assert_problem(r, 422, "bad_totp")
    assert body["field"] == "code"
    assert not user_row(db, username).totp_enabled
    r = client.post("/api/v1/auth/totp/confirm", json={"code": "12ab56"}, headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "code"

    r = client.post("/api/v1/auth/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers)
    assert r.status_code == 204, r.text
    assert user_row(db, username).totp_enabled
    assert {e.action for e in audit_rows(db, object_id=str(user_row(db, username).id))} >= {
        "auth.totp_enroll_start", "auth.totp_enabled"}

    assert_problem(post_login(client, username), 401, "totp_required")
    assert_problem(post_login(client, username, totp=wrong_code(secret)), 401, "bad_totp")
    assert post_login(client, username, totp=pyotp.TOTP(secret).now()).status_code == 200
    # A second enrolment is refused and leaves the secret alone.
    assert_problem(client.post("/api/v1/auth/totp/enroll", headers=headers), 409, "totp_already_enabled")
    assert user_row(db, username).totp_secret == secret


def test_confirm_without_enrolment(client, db):
    username, _ = new_user(db)
    headers = bearer(post_login(client, username))
    assert_problem(client.post("/api/v1/auth/totp/confirm", json={"code": "123456"}, headers=headers), 409,
                   "totp_not_started")
    assert not user_row(db, username).totp_enabled


# --------------------------------------------------------------------------- tokens


def test_token_expires(client, db):
    username, _ = new_user(db)
    r = post_login(client, username)
    headers = bearer(r)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    token_hash = hashlib.sha256(r.json()["access_token"].encode()).hexdigest()
    with db.unit_of_work() as s:
        n = s.execute(update(AuthToken).where(AuthToken.token_hash == token_hash)
                      .values(expires_at=utcnow() - timedelta(seconds=1))).rowcount
    assert n == 1
    assert_problem(client.get("/api/v1/auth/me", headers=headers), 401, "unauthorized")
    assert_problem(client.get("/api/v1/grids", headers=headers), 401, "unauthorized")
    # A new login gives a new working token.
    assert client.get("/api/v1/auth/me", headers=bearer(post_login(client, username))).status_code == 200


def test_logout_revokes_only_that_token(client, db):
    username, _ = new_user(db)
    first = bearer(post_login(client, username))
    second = bearer(post_login(client, username))
    assert first != second
    r = client.post("/api/v1/auth/logout", headers=first)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_problem(client.get("/api/v1/auth/me", headers=first), 401, "unauthorized")
    assert_problem(client.post("/api/v1/auth/logout", headers=first), 401, "unauthorized")
    assert client.get("/api/v1/auth/me", headers=second).status_code == 200

    uid = user_row(db, username).id
    with db.unit_of_work(write=False) as s:
        revoked = [t.revoked_at is not None for t in
                   s.execute(select(AuthToken).where(AuthToken.user_id == uid).order_by(AuthToken.id)).scalars()]
    assert revoked == [True, False]
    assert len(audit_rows(db, action="auth.logout", object_id=str(uid))) == 1


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer not-a-real-token", "Basic YWRtaW46U2hpeXVAMjAyNg==", "Token abc",
    "Bearer " + "x" * 5000,
])
def test_missing_or_invalid_bearer(client, header):
    headers = {} if header is None else {"Authorization": header}
    body = assert_problem(client.get("/api/v1/auth/me", headers=headers), 401, "unauthorized")
    assert body["title"] == "未登录或登录已失效"


# --------------------------------------------------------------------------- me


@pytest.mark.parametrize(("username", "role", "jurisdiction"), [
    ("dispatcher_320102001000", "dispatcher", "320102001000"),
    ("mediator_320102001000", "mediator", "320102001000"),  # bound to a department, granted its town
    ("auditor_city", "auditor", "320100000000"),
    ("grid_320102001001", "grid_worker", "320102001001"),
    ("admin", "admin", "320100000000"),
])
def test_me_shows_grants_and_actions(client, login, username, role, jurisdiction):
    r = client.get("/api/v1/auth/me", headers=login(username))
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["username"] == username and me["role"] == role
    assert isinstance(me["user_id"], int)
    assert me["grants"] == [{"role": role, "jurisdiction_code": jurisdiction}]
    assert me["actions"] == [a for a in ACTIONS if a in ROLE_ACTIONS[role]]


def test_me_of_a_new_user(client, db):
    username, _ = new_user(db, role="leader", unit="320102002000")
    me = client.get("/api/v1/auth/me", headers=bearer(post_login(client, username))).json()
    assert me["unit_code"] == "320102002000"
    assert me["grants"] == [{"role": "leader", "jurisdiction_code": "320102002000"}]
    assert "pii.reveal" not in me["actions"] and "household.read" in me["actions"]
