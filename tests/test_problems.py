"""Errors as RFC 9457 Problem Details 问题详情, in Chinese or English; bad input never
gives a 500; no unmasked resident ID or phone number in any response or log line
unless explicitly revealed (and then audited).

The bad-request table names the OpenAPI operation each case exercises; a test checks
that every operation in the OpenAPI document has at least one case, and a second,
spec-driven pass sends generated malformed requests to every operation.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from shiyu.domains.geo.models import HouseholdGroup
from shiyu.kit.pii import find_unmasked, validate_mobile, validate_resident_id
from shiyu.platform.audit.models import AuditEntry

PROBLEM_MEMBERS = ("type", "title", "status", "detail", "instance", "code", "request_id")
LIMIT = 1_048_576
CJK = re.compile(r"[\u4e00-\u9fff]")
TOWN = "320102001000"
DISPATCHER = "dispatcher_320102001000"
WHO = {"disp": DISPATCHER, "admin": "admin", "auditor": "auditor_city", "leader": "leader_city",
       "handler": "handler_320102001000_ga"}


def uniq(prefix: str) -> str:
    """A unique tag of letters only: hex digits could form a run that reads as a phone number."""
    return prefix + "-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))


def check_problem(r: Any, status: int | None = None) -> dict[str, Any]:
    """Assert ``r`` is a well-formed problem response and return its body."""
    assert r.status_code < 500, r.text
    if status is not None:
        assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/problem+json", r.headers
    body = r.json()
    assert isinstance(body, dict), body
    for member in PROBLEM_MEMBERS:
        assert member in body and body[member] not in (None, ""), (member, body)
    assert body["status"] == r.status_code
    assert body["type"] == f"urn:shiyu:problem:{body['code']}"
    assert body["instance"].startswith("/")
    assert body["request_id"] == r.headers["x-request-id"]
    if r.status_code == 401:
        assert r.headers.get("www-authenticate") == "Bearer"
    if r.status_code == 422:
        assert body.get("field"), f"a 422 must name the field at fault: {body}"
        if "errors" in body:
            assert body["errors"] and all(e["field"] and e["message"] for e in body["errors"])
            assert body["field"] in [e["field"] for e in body["errors"]]
    return body


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A streamed body with no Content-Length (sent chunked)."""
    sent = 0
    yield b'{"reason": "'
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    op: str  # "METHOD /path/{template}" as in the OpenAPI document
    name: str
    method: str
    url: str
    who: str | None = "disp"
    status: int = 422
    field: str | None = None
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.op} | {self.name}"


JSON = {"Content-Type": "application/json"}
REVEAL = "/api/v1/households/{code}/reveal"
GOOD_REASON = {"reason": "核实矛盾纠纷当事人"}
NEW_USER = {"username": "prob_user_x", "password": "Prob#2026x", "role": "dispatcher", "unit_code": TOWN}

CASES: list[Case] = [
    # --- auth/token (form)
    Case("POST /api/v1/auth/token", "no fields", "POST", "/api/v1/auth/token", None, field="username",
         kwargs={"data": {}}),
    Case("POST /api/v1/auth/token", "missing password", "POST", "/api/v1/auth/token", None, field="password",
         kwargs={"data": {"username": "nobody_at_all"}}),
    Case("POST /api/v1/auth/token", "username too long", "POST", "/api/v1/auth/token", None, field="username",
         kwargs={"data": {"username": "u" * 65, "password": "x"}}),
    Case("POST /api/v1/auth/token", "bad grant_type", "POST", "/api/v1/auth/token", None, field="grant_type",
         kwargs={"data": {"username": "nobody_at_all", "password": "x", "grant_type": "client_credentials"}}),
    Case("POST /api/v1/auth/token", "totp too long", "POST", "/api/v1/auth/token", None, field="totp",
         kwargs={"data": {"username": "nobody_at_all", "password": "x", "totp": "123456789"}}),
    Case("POST /api/v1/auth/token", "JSON instead of a form", "POST", "/api/v1/auth/token", None,
         field="username", kwargs={"content": b"[1, 2]", "headers": JSON}),
    Case("POST /api/v1/auth/token", "unknown user", "POST", "/api/v1/auth/token", None, status=401,
         kwargs={"data": {"username": "nobody_at_all", "password": "Wrong#Pass1"}}),
    # --- auth/logout, me, totp
    Case("POST /api/v1/auth/logout", "no token", "POST", "/api/v1/auth/logout", None, status=401),
    Case("POST /api/v1/auth/logout", "forged token", "POST", "/api/v1/auth/logout", None, status=401,
         kwargs={"headers": {"Authorization": "Bearer forged-token-000"}}),
    Case("GET /api/v1/auth/me", "basic auth", "GET", "/api/v1/auth/me", None, status=401,
         kwargs={"headers": {"Authorization": "Basic YWRtaW46eA=="}}),
    Case("GET /api/v1/auth/me", "wrong method", "DELETE", "/api/v1/auth/me", status=405),
    Case("POST /api/v1/auth/totp/enroll", "no token", "POST", "/api/v1/auth/totp/enroll", None, status=401),
    Case("POST /api/v1/auth/totp/confirm", "letters in code", "POST", "/api/v1/auth/totp/confirm",
         field="code", kwargs={"json": {"code": "12ab56"}}),
    Case("POST /api/v1/auth/totp/confirm", "missing code", "POST", "/api/v1/auth/totp/confirm",
         field="code", kwargs={"json": {}}),
    Case("POST /api/v1/auth/totp/confirm", "extra field", "POST", "/api/v1/auth/totp/confirm",
         field="extra", kwargs={"json": {"code": "123456", "extra": 1}}),
    Case("POST /api/v1/auth/totp/confirm", "malformed JSON", "POST", "/api/v1/auth/totp/confirm",
         field="body", kwargs={"content": b'{"code":', "headers": JSON}),
    Case("POST /api/v1/auth/totp/confirm", "array body", "POST", "/api/v1/auth/totp/confirm",
         field="body", kwargs={"json": ["123456"]}),
    # --- users
    Case("GET /api/v1/users", "limit zero", "GET", "/api/v1/users?limit=0", "admin", field="limit"),
    Case("GET /api/v1/users", "offset text", "GET", "/api/v1/users?offset=abc", "admin", field="offset"),
    Case("GET /api/v1/users", "unit too long", "GET", "/api/v1/users?unit=" + "1" * 40, "admin", field="unit"),
    Case("GET /api/v1/users", "role may not", "GET", "/api/v1/users", "disp", status=403),
    Case("POST /api/v1/users", "empty object", "POST", "/api/v1/users", "admin", field="username",
         kwargs={"json": {}}),
    Case("POST /api/v1/users", "extra field", "POST", "/api/v1/users", "admin", field="is_admin",
         kwargs={"json": {**NEW_USER, "is_admin": True}}),
    Case("POST /api/v1/users", "wrong type", "POST", "/api/v1/users", "admin", field="username",
         kwargs={"json": {**NEW_USER, "username": 12345}}),
    Case("POST /api/v1/users", "malformed JSON", "POST", "/api/v1/users", "admin", field="body",
         kwargs={"content": b'{"username": "a",,}', "headers": JSON}),
    Case("POST /api/v1/users", "bad username", "POST", "/api/v1/users", "admin", field="username",
         kwargs={"json": {**NEW_USER, "username": "Bad User!"}}),
    Case("POST /api/v1/users", "weak password", "POST", "/api/v1/users", "admin", field="password",
         kwargs={"json": {**NEW_USER, "password": "aaaaaaaaaa"}}),
    Case("POST /api/v1/users", "unknown role", "POST", "/api/v1/users", "admin", field="role",
         kwargs={"json": {**NEW_USER, "role": "emperor"}}),
    Case("POST /api/v1/users", "unknown unit", "POST", "/api/v1/users", "admin", field="unit_code",
         kwargs={"json": {**NEW_USER, "unit_code": "999999999999"}}),
    Case("POST /api/v1/users", "bad phone", "POST", "/api/v1/users", "admin", field="phone",
         kwargs={"json": {**NEW_USER, "phone": "12345"}}),
    Case("POST /api/v1/users", "taken username", "POST", "/api/v1/users", "admin", status=409,
         kwargs={"json": {**NEW_USER, "username": "admin"}}),
    Case("GET /api/v1/users/{user_id}", "text id", "GET", "/api/v1/users/abc", "admin", field="user_id"),
    Case("GET /api/v1/users/{user_id}", "zero id", "GET", "/api/v1/users/0", "admin", field="user_id"),
    Case("GET /api/v1/users/{user_id}", "huge id", "GET", "/api/v1/users/" + "9" * 40, "admin",
         field="user_id"),
    Case("GET /api/v1/users/{user_id}", "unknown id", "GET", "/api/v1/users/987654321", "admin", status=404),
    # --- units
    Case("GET /api/v1/units/{code}", "unknown code", "GET", "/api/v1/units/999999999999", status=404),
    Case("GET /api/v1/units/{code}", "lower case", "GET", "/api/v1/units/abcdef", field="code"),
    Case("GET /api/v1/units/{code}", "too short", "GET", "/api/v1/units/12", field="code"),
    Case("GET /api/v1/units/{code}", "too long", "GET", "/api/v1/units/" + "1" * 33, field="code"),
    Case("GET /api/v1/units/{code}", "sql-ish", "GET", "/api/v1/units/1%27%20OR%201=1", field="code"),
    Case("GET /api/v1/units/{code}", "wrong method", "PUT", "/api/v1/units/320102000000", status=405),
    Case("GET /api/v1/units/{code}/children", "bad pattern", "GET", "/api/v1/units/%E5%8D%97%E4%BA%AC/children",
         field="code"),
    Case("GET /api/v1/units/{code}/children", "unknown code", "GET", "/api/v1/units/999999999999/children",
         status=404),
    # --- grids
    Case("GET /api/v1/grids", "negative limit", "GET", "/api/v1/grids?limit=-1", field="limit"),
    Case("GET /api/v1/grids", "limit too big", "GET", "/api/v1/grids?limit=5001", field="limit"),
    Case("GET /api/v1/grids", "text offset", "GET", "/api/v1/grids?offset=ten", field="offset"),
    Case("GET /api/v1/grids", "unknown unit", "GET", "/api/v1/grids?unit=999999999999", field="unit"),
    Case("GET /api/v1/grids", "bad unit", "GET", "/api/v1/grids?unit=ab", field="unit"),
    Case("GET /api/v1/grids", "bad layer", "GET", "/api/v1/grids?layer=DROP%20TABLE", field="layer"),
    Case("GET /api/v1/grids", "bad bool", "GET", "/api/v1/grids?geometry=maybe", field="geometry"),
    Case("GET /api/v1/grids/{code}", "too short", "GET", "/api/v1/grids/ab", field="code"),
    Case("GET /api/v1/grids/{code}", "unknown", "GET", "/api/v1/grids/NOPE-0000", status=404),
    # --- locate
    Case("GET /api/v1/geo/locate", "lon text", "GET", "/api/v1/geo/locate?lon=abc&lat=32", field="lon"),
    Case("GET /api/v1/geo/locate", "lat missing", "GET", "/api/v1/geo/locate?lon=118.8", field="lat"),
    Case("GET /api/v1/geo/locate", "nothing", "GET", "/api/v1/geo/locate", field="lon"),
    Case("GET /api/v1/geo/locate", "lon out of range", "GET", "/api/v1/geo/locate?lon=200&lat=32", field="lon"),
    Case("GET /api/v1/geo/locate", "lat nan", "GET", "/api/v1/geo/locate?lon=118&lat=nan", field="lat"),
    Case("GET /api/v1/geo/locate", "lon inf", "GET", "/api/v1/geo/locate?lon=inf&lat=32", field="lon"),
    Case("GET /api/v1/geo/locate", "in no grid", "GET", "/api/v1/geo/locate?lon=0&lat=0", status=404),
    # --- reveal
    Case(f"POST {REVEAL}", "malformed JSON", "POST", "/api/v1/households/AB12/reveal", field="body",
         kwargs={"content": b'{"reason":', "headers": JSON}),
    Case(f"POST {REVEAL}", "array", "POST", "/api/v1/households/AB12/reveal", field="body",
         kwargs={"json": ["核实矛盾纠纷当事人"]}),
    Case(f"POST {REVEAL}", "string", "POST", "/api/v1/households/AB12/reveal", field="body",
         kwargs={"json": "核实"}),
    Case(f"POST {REVEAL}", "no body", "POST", "/api/v1/households/AB12/reveal", field="body"),
    Case(f"POST {REVEAL}", "missing reason", "POST", "/api/v1/households/AB12/reveal", field="reason",
         kwargs={"json": {}}),
    Case(f"POST {REVEAL}", "reason wrong type", "POST", "/api/v1/households/AB12/reveal", field="reason",
         kwargs={"json": {"reason": 12345}}),
    Case(f"POST {REVEAL}", "reason too short", "POST", "/api/v1/households/AB12/reveal", field="reason",
         kwargs={"json": {"reason": "ab"}}),
    Case(f"POST {REVEAL}", "extra field", "POST", "/api/v1/households/AB12/reveal", field="fields",
         kwargs={"json": {**GOOD_REASON, "fields": ["all"]}}),
    Case(f"POST {REVEAL}", "bad code", "POST", "/api/v1/households/a%20b/reveal", field="code",
         kwargs={"json": GOOD_REASON}),
    Case(f"POST {REVEAL}", "unknown household", "POST", "/api/v1/households/ZZZZ-9999/reveal", status=404,
         kwargs={"json": GOOD_REASON}),
    Case(f"POST {REVEAL}", "role may not", "POST", "/api/v1/households/ZZZZ-9999/reveal", "leader",
         status=403, kwargs={"json": GOOD_REASON}),
    Case(f"POST {REVEAL}", "oversize declared", "POST", "/api/v1/households/AB12/reveal", status=413,
         field="body", kwargs={"content": b"{" + b" " * LIMIT + b"}", "headers": JSON}),
    Case(f"POST {REVEAL}", "oversize streamed", "POST", "/api/v1/households/AB12/reveal", status=413,
         field="body", kwargs={"content": lambda: chunks(LIMIT + 1), "headers": JSON}),
    # --- audit
    Case("GET /api/v1/audit", "since not a date", "GET", "/api/v1/audit?since=yesterday", "auditor",
         field="since"),
    Case("GET /api/v1/audit", "since without zone", "GET", "/api/v1/audit?since=2026-01-01T00:00:00", "auditor",
         field="since"),
    Case("GET /api/v1/audit", "bad result", "GET", "/api/v1/audit?result=maybe", "auditor", field="result"),
    Case("GET /api/v1/audit", "limit too big", "GET", "/api/v1/audit?limit=1001", "auditor", field="limit"),
    Case("GET /api/v1/audit", "action too long", "GET", "/api/v1/audit?action=" + "a" * 65, "auditor",
         field="action"),
    Case("GET /api/v1/audit", "role may not", "GET", "/api/v1/audit", "disp", status=403),
    # --- work items 工单
    Case("POST /api/v1/items", "no idempotency key", "POST", "/api/v1/items", field="Idempotency-Key",
         kwargs={"json": {"kind": "hotline", "title": "标题测试", "unit": TOWN}}),
    Case("POST /api/v1/items", "unknown kind", "POST", "/api/v1/items", field="kind",
         kwargs={"json": {"kind": "rumour", "title": "标题测试"}, "headers": {"Idempotency-Key": "p-1"}}),
    Case("POST /api/v1/items", "unknown category", "POST", "/api/v1/items", field="category",
         kwargs={"json": {"kind": "hotline", "title": "标题测试", "unit": TOWN, "category": "HL-NOPE"},
                 "headers": {"Idempotency-Key": "p-2"}}),
    Case("POST /api/v1/items", "point in no grid", "POST", "/api/v1/items", field="lon",
         kwargs={"json": {"kind": "event", "title": "标题测试", "category": "EV-01-01", "lon": 1.0, "lat": 1.0},
                 "headers": {"Idempotency-Key": "p-3"}}),
    Case("POST /api/v1/items", "bad resident id", "POST", "/api/v1/items", field="parties[0].id_number",
         kwargs={"json": {"kind": "dispute", "title": "标题测试", "unit": TOWN,
                          "parties": [{"name": "甲", "id_number": "110105194912310021"}]},
                 "headers": {"Idempotency-Key": "p-4"}}),
    Case("POST /api/v1/items", "lon wrong type", "POST", "/api/v1/items", field="lon",
         kwargs={"json": {"kind": "event", "title": "标题测试", "lon": "east", "lat": 32.0},
                 "headers": {"Idempotency-Key": "p-5"}}),
    Case("POST /api/v1/items", "malformed JSON", "POST", "/api/v1/items", field="body",
         kwargs={"content": b'{"kind": ', "headers": {**JSON, "Idempotency-Key": "p-6"}}),
    Case("GET /api/v1/items", "bad status", "GET", "/api/v1/items?status=sleeping", field="status"),
    Case("GET /api/v1/items", "limit too big", "GET", "/api/v1/items?limit=501", field="limit"),
    Case("GET /api/v1/items", "since no zone", "GET", "/api/v1/items?since=2026-01-01T00:00:00", field="since"),
    Case("GET /api/v1/items", "unknown unit", "GET", "/api/v1/items?unit=999999999999", field="unit"),
    Case("GET /api/v1/items/export", "bad format", "GET", "/api/v1/items/export?format=pdf", field="format"),
    Case("GET /api/v1/items/export", "role may not", "GET", "/api/v1/items/export", "handler", status=403),
    Case("GET /api/v1/items/{item_id}", "text id", "GET", "/api/v1/items/abc", field="item_id"),
    Case("GET /api/v1/items/{item_id}", "unknown id", "GET", "/api/v1/items/987654321", status=404),
    Case("POST /api/v1/items/{item_id}/reveal", "short reason", "POST", "/api/v1/items/1/reveal", field="reason",
         kwargs={"json": {"reason": "a"}}),
    Case("POST /api/v1/items/{item_id}/actions/{action}", "unknown action", "POST",
         "/api/v1/items/987654321/actions/explode", status=404, kwargs={"json": {}}),
    Case("POST /api/v1/items/{item_id}/actions/{action}", "rating out of range", "POST",
         "/api/v1/items/1/actions/rate", field="rating", kwargs={"json": {"rating": 9}}),
    Case("POST /api/v1/items/{item_id}/actions/{action}", "extra field", "POST",
         "/api/v1/items/1/actions/accept", field="force", kwargs={"json": {"force": True}}),
    Case("GET /api/v1/items/{item_id}/timeline", "zero id", "GET", "/api/v1/items/0/timeline", field="item_id"),
    Case("POST /api/v1/items/{item_id}/attachments", "no file", "POST", "/api/v1/items/1/attachments",
         field="file"),
    Case("GET /api/v1/items/{item_id}/attachments/{attachment_id}", "text id", "GET",
         "/api/v1/items/1/attachments/x", field="attachment_id"),
    Case("POST /api/v1/items/{item_id}/supervisions", "missing note", "POST", "/api/v1/items/1/supervisions",
         "leader", field="note", kwargs={"json": {"days": 3}}),
    Case("GET /api/v1/items/{item_id}/supervisions", "text id", "GET", "/api/v1/items/x/supervisions",
         field="item_id"),
    Case("POST /api/v1/items/{item_id}/supervisions/{supervision_id}/resolve", "text id", "POST",
         "/api/v1/items/1/supervisions/x/resolve", "leader", field="supervision_id"),
    Case("POST /api/v1/items/{item_id}/duplicates/{candidate_id}/dismiss", "text id", "POST",
         "/api/v1/items/1/duplicates/x/dismiss", field="candidate_id"),
    Case("POST /api/v1/items/{item_id}/mediation", "bad record", "POST", "/api/v1/items/1/mediation",
         field="record", kwargs={"json": {"record": "duel", "note": "说明"}}),
    Case("GET /api/v1/notifications", "limit zero", "GET", "/api/v1/notifications?limit=0", field="limit"),
    Case("POST /api/v1/notifications/{notification_id}/read", "text id", "POST", "/api/v1/notifications/x/read",
         field="notification_id"),
    # --- catalogues 配置
    Case("GET /api/v1/categories", "bad kind", "GET", "/api/v1/categories?kind=rumour", field="kind"),
    Case("POST /api/v1/categories", "bad code", "POST", "/api/v1/categories", "admin", field="code",
         kwargs={"json": {"code": "lower-case", "name": "x", "kind": "event"}}),
    Case("POST /api/v1/categories", "role may not", "POST", "/api/v1/categories", "disp", status=403,
         kwargs={"json": {"code": "EV-77", "name": "x", "kind": "event"}}),
    Case("PATCH /api/v1/categories/{code}", "unknown", "PATCH", "/api/v1/categories/EV-99-99-99", "admin",
         status=404, kwargs={"json": {"name": "x"}}),
    Case("GET /api/v1/sla-rules", "wrong method", "DELETE", "/api/v1/sla-rules", status=405),
    Case("PUT /api/v1/sla-rules", "bad duration", "PUT", "/api/v1/sla-rules", "admin", field="duration",
         kwargs={"json": {"kind": "hotline", "step": "handle", "duration": "soon"}}),
    Case("GET /api/v1/holidays", "bad year", "GET", "/api/v1/holidays?year=1066", field="year"),
    Case("PUT /api/v1/holidays", "bad date", "PUT", "/api/v1/holidays", "admin", field="day",
         kwargs={"json": {"day": "2026-02-30"}}),
    Case("DELETE /api/v1/holidays/{day}", "bad date", "DELETE", "/api/v1/holidays/yesterday", "admin", field="day"),
    Case("GET /api/v1/analysis/report", "no unit", "GET", "/api/v1/analysis/report?period=2026-10", "leader",
         field="unit"),
    Case("GET /api/v1/analysis/report", "period not a month", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2026-13", "leader", field="period"),
    Case("GET /api/v1/analysis/report", "period as a date", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2026-10-01", "leader", field="period"),
    Case("GET /api/v1/analysis/report", "future period", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2999-01", "leader", field="period"),
    Case("GET /api/v1/analysis/report", "unknown format", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2026-10&format=docx", "leader", field="format"),
    Case("GET /api/v1/analysis/report", "unknown audience", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2026-10&format=pdf&audience=press", "leader",
         field="audience"),
    Case("GET /api/v1/analysis/report", "too few permutations", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2026-10&permutations=5", "leader", field="permutations"),
    Case("GET /api/v1/analysis/report", "unknown unit", "GET",
         "/api/v1/analysis/report?unit=999999999999&period=2026-10", "leader", status=404),
    Case("GET /api/v1/analysis/report", "a department", "GET",
         f"/api/v1/analysis/report?unit={TOWN}-GA&period=2026-10", "leader", status=404),
    Case("GET /api/v1/analysis/report", "role without analysis", "GET",
         f"/api/v1/analysis/report?unit={TOWN}&period=2026-10", "handler", status=403),
    Case("GET /api/v1/analysis/hotspots", "bad seed", "GET",
         f"/api/v1/analysis/hotspots?unit={TOWN}&period=2026-10&seed=-1", "leader", field="seed"),
    Case("GET /api/v1/analysis/hotspots", "month 00", "GET",
         f"/api/v1/analysis/hotspots?unit={TOWN}&period=2026-00", "leader", field="period"),
    Case("GET /api/v1/analysis/warnings", "bad date", "GET",
         f"/api/v1/analysis/warnings?unit={TOWN}&as_of=2026-02-30", "leader", field="as_of"),
    Case("GET /api/v1/analysis/reports", "no unit", "GET", "/api/v1/analysis/reports", "leader", field="unit"),
    Case("GET /api/v1/analysis/reports/{period}/{unit_code}", "bad month", "GET",
         f"/api/v1/analysis/reports/2026-1/{TOWN}", "leader", field="period"),
    Case("GET /api/v1/analysis/reports/{period}/{unit_code}", "month never archived", "GET",
         f"/api/v1/analysis/reports/1999-01/{TOWN}", "leader", status=404),
    Case("GET /api/v1/analysis/warnings", "year 1", "GET",
         f"/api/v1/analysis/warnings?unit={TOWN}&as_of=0001-02-08", "leader", field="as_of"),
    Case("GET /api/v1/analysis/warnings", "future date", "GET",
         f"/api/v1/analysis/warnings?unit={TOWN}&as_of=2999-01-01", "leader", field="as_of"),
    # --- ops
    Case("GET /healthz", "wrong method", "POST", "/healthz", None, status=405),
    Case("GET /healthz", "trailing junk", "GET", "/healthz/x", None, status=404),
    Case("GET /livez", "wrong method", "POST", "/livez", None, status=405),
]


def send(client: Any, login: Callable[..., dict[str, str]], case: Case) -> Any:
    kwargs = dict(case.kwargs)
    headers = dict(kwargs.pop("headers", {}))
    if case.who:
        headers.update(login(WHO[case.who]))
    if callable(kwargs.get("content")):
        kwargs["content"] = kwargs["content"]()
    return client.request(case.method, case.url, headers=headers, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_gives_a_problem(client, login, case):
    r = send(client, login, case)
    body = check_problem(r, case.status)
    if case.field is not None:
        assert body["field"] == case.field, body


def openapi_operations(client: Any) -> set[str]:
    spec = client.get("/openapi.json").json()
    return {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops
            if method in ("get", "post", "put", "patch", "delete")}


def test_table_covers_every_openapi_operation(client):
    ops = openapi_operations(client)
    assert len(ops) >= 14
    covered = {c.op for c in CASES}
    assert ops - covered == set(), "operations without a bad-request case"
    assert covered - ops == set(), "cases naming operations the API no longer has"


# --------------------------------------------------------------------------- spec-driven pass

BAD_BY_TYPE = {
    "integer": ["abc", "1.5", "9" * 400, ""],
    "number": ["abc", "nan", "-inf", "1e999"],
    "boolean": ["maybe", "2"],
}
NASTY_STRINGS = ["", "ab", "x" * 2000, "中文", "%00", "a b", "'; DROP TABLE users; --", "../../etc/passwd"]


def _schema(param: dict[str, Any]) -> dict[str, Any]:
    s = param.get("schema", {})
    for alt in s.get("anyOf", []):
        if alt.get("type") != "null":
            return alt
    return s


def _bad_values(schema: dict[str, Any]) -> list[str]:
    t = schema.get("type", "string")
    if t in BAD_BY_TYPE:
        return BAD_BY_TYPE[t]
    out = list(NASTY_STRINGS)
    if schema.get("format") == "date-time":
        out += ["2026-13-45T99:00:00Z", "2026-01-01T00:00:00"]
    return out


def _fill_path(path: str, params: list[dict[str, Any]]) -> str:
    for p in params:
        if p["in"] == "path":
            sample = "1" if _schema(p).get("type") == "integer" else "320102001000"
            path = path.replace("{" + p["name"] + "}", sample)
    return path


def generated_requests(spec: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(op, method, url, kwargs) for malformed requests derived from the OpenAPI document."""
    from urllib.parse import quote

    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            name = f"{method.upper()} {path}"
            params = op.get("parameters", [])
            for p in params:
                for bad in _bad_values(_schema(p)):
                    if p["in"] == "path":
                        if bad == "" or "/" in bad:
                            continue  # would name another route
                        url = _fill_path(path.replace("{" + p["name"] + "}", quote(bad, safe="")), params)
                        yield name, method, url, {}
                    elif p["in"] == "query":
                        yield name, method, _fill_path(path, params), {"params": {p["name"]: bad}}
            required = [p for p in params if p["in"] == "query" and p.get("required")]
            if required:
                yield name, method, _fill_path(path, params), {}
            content = op.get("requestBody", {}).get("content", {})
            url = _fill_path(path, params)
            if "application/json" in content:
                for raw in (b'{"a":', b"[]", b'"text"', b"null", b"1e999", b"{}", b'{"\\ud800": 1}',
                            b"[" * 5000 + b"]" * 5000, "{\"中\": \"文\"}".encode()):
                    yield name, method, url, {"content": raw, "headers": {"Content-Type": "application/json"}}
                yield name, method, url, {"content": b'{"a": 1}', "headers": {"Content-Type": "text/plain"}}
            if "application/x-www-form-urlencoded" in content:
                for data in ({}, {"username": "x" * 100}, {"password": "only"}):
                    yield name, method, url, {"data": data}
                yield name, method, url, {"content": b"\xff\xfe%%%", "headers": {
                    "Content-Type": "application/x-www-form-urlencoded"}}
            # Every operation: a method it does not have, and no credentials / broken ones.
            yield name, "PATCH", url, {}
            yield name, method, url, {"headers": {"Authorization": b"Bearer \xe9\xe9"}}


@pytest.fixture(scope="module")
def fuzz_headers(login: Callable[..., dict[str, str]]) -> dict[str, str]:
    # A token of its own: nothing generated here may revoke the shared cached one.
    return login("admin", fresh=True)


@pytest.mark.parametrize("with_token", [True, False], ids=["admin", "anonymous"])
def test_generated_malformed_requests_never_fail_the_server(client, fuzz_headers, with_token):
    spec = client.get("/openapi.json").json()
    failures: list[str] = []
    seen_ops: set[str] = set()
    n = 0
    for op, method, url, kwargs in generated_requests(spec):
        kwargs = dict(kwargs)
        headers = dict(kwargs.pop("headers", {}))
        if with_token and "Authorization" not in headers:
            headers.update(fuzz_headers)
        r = client.request(method.upper(), url, headers=headers, **kwargs)
        n += 1
        if r.status_code < 400:
            continue  # well-formed after all (e.g. ignored junk): nothing to check
        seen_ops.add(op)
        try:
            check_problem(r)
        except AssertionError as exc:
            failures.append(f"{method.upper()} {url} {kwargs}: {r.status_code} {exc}")
    assert n > 100
    assert failures == [], "\n".join(failures[:20])
    assert seen_ops == openapi_operations(client)


# --------------------------------------------------------------------------- problem details


def test_validation_problem_in_chinese_and_english(client, login):
    headers = login(DISPATCHER)
    zh = check_problem(client.get("/api/v1/grids?limit=-1", headers=headers), 422)
    assert zh["title"] == "输入有误" and zh["code"] == "invalid"
    assert zh["detail"] == "输入有误，请检查标出的字段。"
    assert zh["field"] == "limit" and zh["instance"] == "/api/v1/grids"
    [err] = zh["errors"]
    assert err["field"] == "limit" and err["message"] == "数值太小" and err["in"] == "query"

    en = check_problem(client.get("/api/v1/grids?limit=-1", headers={**headers, "Accept-Language": "en"}), 422)
    assert en["title"] == "Invalid input"
    assert en["detail"] == "Invalid input; check the fields named."
    assert en["errors"][0]["message"] == "Too small"
    assert not CJK.search(json.dumps(en, ensure_ascii=False))
    # Quality values are honoured; unknown languages fall back to Chinese.
    pref = client.get("/api/v1/grids?limit=-1", headers={**headers, "Accept-Language": "zh-CN;q=0.3, en;q=0.9"})
    assert check_problem(pref)["title"] == "Invalid input"
    fr = client.get("/api/v1/grids?limit=-1", headers={**headers, "Accept-Language": "fr-FR"})
    assert check_problem(fr)["title"] == "输入有误"


def test_not_found_in_chinese_and_english(client, login):
    headers = login(DISPATCHER)
    zh = check_problem(client.get("/api/v1/units/999999999999", headers=headers), 404)
    assert zh["code"] == "not_found" and zh["title"] == "未找到"
    assert zh["detail"] == "请求的对象不存在或不在您的辖区内。"
    assert zh["instance"] == "/api/v1/units/999999999999"
    en = check_problem(client.get("/api/v1/units/999999999999", headers={**headers, "Accept-Language": "en-GB"}),
                       404)
    assert en["title"] == "Not found"
    assert en["detail"] == "The requested object does not exist or is outside your jurisdiction."
    # A unit that exists outside the jurisdiction answers exactly the same.
    other = check_problem(client.get("/api/v1/units/320104000000", headers={**headers, "Accept-Language": "en"}),
                          404)
    assert {k: v for k, v in other.items() if k not in ("instance", "request_id")} == \
        {k: v for k, v in en.items() if k not in ("instance", "request_id")}


def test_malformed_json_body(client, login):
    r = client.post("/api/v1/households/AB12/reveal", content=b'{"reason":',
                    headers={**login(DISPATCHER), **JSON})
    body = check_problem(r, 422)
    assert body["field"] == "body"
    assert body["errors"][0]["type"] == "json_invalid"
    assert body["errors"][0]["message"] == "JSON 格式错误"


def test_json_array_instead_of_object(client, login):
    r = client.post("/api/v1/auth/totp/confirm", json=[{"code": "123456"}], headers=login(DISPATCHER))
    body = check_problem(r, 422)
    assert body["field"] == "body"


def test_unknown_unit_filter_names_the_field(client, login):
    for lang, text in (("zh", "单位代码不存在。"), ("en", "Unknown unit code.")):
        r = client.get("/api/v1/grids?unit=999999999999", headers={**login(DISPATCHER), "Accept-Language": lang})
        body = check_problem(r, 422)
        assert body["field"] == "unit" and body["code"] == "unknown_unit" and body["detail"] == text


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_oversize_body(client, login, streamed, lang):
    content: Any = chunks(LIMIT + 1) if streamed else b"{" + b" " * LIMIT + b"}"
    r = client.post("/api/v1/households/AB12/reveal", content=content,
                    headers={**login(DISPATCHER), **JSON, "Accept-Language": lang, "X-Request-ID": "big-body-1"})
    body = check_problem(r, 413)
    assert body["code"] == "payload_too_large" and body["field"] == "body"
    assert body["request_id"] == "big-body-1"
    assert body["title"] == ("请求内容过大" if lang == "zh-CN" else "Payload too large")
    # Also without a token: the size is refused before anything else.
    r = client.post("/api/v1/auth/token", content=chunks(LIMIT + 1) if streamed else b"u=" + b"x" * LIMIT,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    check_problem(r, 413)


def test_body_at_the_limit_is_accepted(client, login):
    reason = "核实" * 100
    padding = LIMIT - len(json.dumps({"reason": reason, "x": ""}).encode()) - 10
    body = b'{"reason": "' + reason.encode() + b'"' + b" " * padding + b"}"
    assert len(body) <= LIMIT
    r = client.post("/api/v1/households/ZZZZ-9999/reveal", content=body, headers={**login(DISPATCHER), **JSON})
    check_problem(r, 404)  # got through to the service


def test_unknown_route_and_wrong_method(client, login):
    headers = login(DISPATCHER)
    for url in ("/api/v1/nope", "/api/v2/units", "/nothing-here"):
        body = check_problem(client.get(url, headers=headers), 404)
        assert body["code"] == "route_not_found" and body["instance"] == url
    r = client.delete("/api/v1/units/320102000000", headers={**headers, "Accept-Language": "en"})
    body = check_problem(r, 405)
    assert body["code"] == "method_not_allowed" and body["title"] == "Method not allowed"
    assert "GET" in r.headers["allow"]


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer nope", "Basic Zm9vOmJhcg==", "bearer  "])
def test_missing_or_invalid_token(client, auth):
    headers = {"Authorization": auth} if auth is not None else {}
    r = client.get("/api/v1/grids", headers=headers)
    body = check_problem(r, 401)
    assert body["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_request_id_is_kept_or_made(client, login):
    headers = login(DISPATCHER)
    r = client.get("/api/v1/units/999999999999", headers={**headers, "X-Request-ID": "trace.abc-123_x"})
    assert r.headers["x-request-id"] == "trace.abc-123_x"
    assert check_problem(r)["request_id"] == "trace.abc-123_x"
    for bad in ("has space", "x" * 65, "<script>", "13812345678"):
        r = client.get("/api/v1/units/999999999999", headers={**headers, "X-Request-ID": bad})
        rid = check_problem(r)["request_id"]
        assert rid != bad and rid == r.headers["x-request-id"]
    a, b = (client.get("/api/v1/nope").headers["x-request-id"] for _ in range(2))
    assert a != b
    # Successful responses carry it too.
    assert client.get("/healthz").headers["x-request-id"]


def test_denials_are_audited_with_the_request_id(client, login, db):
    rid = uniq("deny")
    r = client.get("/api/v1/units/320104000000", headers={**login(DISPATCHER), "X-Request-ID": rid})
    check_problem(r, 404)
    with db.unit_of_work(write=False) as s:
        rows = list(s.execute(select(AuditEntry).where(AuditEntry.request_id == rid)).scalars())
    assert [(e.action, e.result, e.object_id) for e in rows] == [("unit.read", "denied", "320104000000")]


def test_audit_listing_shows_hashes_that_cannot_read_as_personal_data(client, login, db):
    """Hex digests hold digit runs that read as phone numbers or resident IDs in a few
    entries per thousand; the API groups them. The whole log is paged through here,
    and the CheckedClient fails on any unmasked-looking value."""
    headers = login("auditor_city")
    with db.unit_of_work(write=False) as s:
        stored = dict(s.execute(select(AuditEntry.seq, AuditEntry.hash)).all())
    assert len(stored) > 500
    seen = 0
    for offset in range(0, len(stored), 1000):
        r = client.get("/api/v1/audit", params={"limit": 1000, "offset": offset}, headers=headers)
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            if item["seq"] in stored:
                assert re.fullmatch(r"[0-9a-f]{8}(:[0-9a-f]{8}){7}", item["hash"]), item["hash"]
                assert item["hash"].replace(":", "") == stored[item["seq"]]
                seen += 1
    assert seen == len(stored)


# --------------------------------------------------------------------------- personal data


def _town_household(client: Any, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """A grid of the dispatcher's town and one of its ten-household units with a phone."""
    grids = client.get("/api/v1/grids", params={"unit": TOWN, "limit": 50}, headers=headers)
    assert grids.status_code == 200, grids.text
    assert grids.json()["total"] > 0
    for g in grids.json()["items"]:
        detail = client.get(f"/api/v1/grids/{g['code']}", headers=headers)
        assert detail.status_code == 200, detail.text
        for h in detail.json()["household_groups"]:
            if h["lead_phone"] and h["lead_resident_id"]:
                return g["code"], h
    raise AssertionError("no ten-household unit with a lead phone in the demo town")


def test_reveal_shows_the_phone_and_is_audited(client, login, db):
    headers = login(DISPATCHER)
    grid, masked = _town_household(client, headers)
    code = masked["code"]
    with db.unit_of_work(write=False) as s:
        h = s.execute(select(HouseholdGroup).where(HouseholdGroup.code == code)).scalar_one()
        phone, rid_value, name = h.lead_phone, h.lead_resident_id, h.lead_name
    assert masked["masked"] is True
    assert masked["lead_phone"] != phone and "****" in masked["lead_phone"]
    assert masked["lead_phone"][:3] == phone[:3] and masked["lead_phone"][-4:] == phone[-4:]
    assert masked["lead_resident_id"] != rid_value and "*" in masked["lead_resident_id"]
    assert masked["lead_name"] != name or len(name) == 1

    reason = f"核实矛盾纠纷当事人联系方式 {uniq('r')}"
    r = client.post(f"/api/v1/households/{code}/reveal", json={"reason": reason},
                    headers={**headers, "X-Request-ID": "reveal-1"})
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["masked"] is False
    assert shown["lead_phone"] == phone and validate_mobile(phone) == phone
    assert shown["lead_resident_id"] == rid_value and validate_resident_id(rid_value)
    assert shown["lead_name"] == name
    assert phone in find_unmasked(r.text)

    with db.unit_of_work(write=False) as s:
        rows = list(s.execute(select(AuditEntry).where(AuditEntry.action == "pii.reveal",
                                                       AuditEntry.object_id == code)).scalars())
    mine = [e for e in rows if e.detail.get("reason") == reason]
    assert len(mine) == 1
    entry = mine[0]
    assert (entry.actor, entry.result, entry.object_type, entry.request_id) == (
        DISPATCHER, "ok", "household_group", "reveal-1")
    assert set(entry.detail["fields"]) >= {"lead_phone", "lead_resident_id"}
    # The audit log itself holds no unmasked value.
    assert find_unmasked(json.dumps(entry.detail, ensure_ascii=False)) == []

    # The grid view stays masked after a reveal (the CheckedClient also checks every byte).
    again = client.get(f"/api/v1/grids/{grid}", headers=headers)
    [h2] = [h for h in again.json()["household_groups"] if h["code"] == code]
    assert h2 == masked


def test_reveal_refusals_leave_no_reveal_entry(client, login, db):
    grid, masked = _town_household(client, login(DISPATCHER))
    code = masked["code"]

    def reveals() -> int:
        with db.unit_of_work(write=False) as s:
            return len(list(s.execute(select(AuditEntry.seq).where(
                AuditEntry.action == "pii.reveal", AuditEntry.object_id == code, AuditEntry.result == "ok"))))

    before = reveals()
    # Another town's dispatcher: as if it did not exist.
    r = client.post(f"/api/v1/households/{code}/reveal", json=GOOD_REASON, headers=login("dispatcher_320102002000"))
    check_problem(r, 404)
    # A leader may read households but not reveal them.
    r = client.post(f"/api/v1/households/{code}/reveal", json=GOOD_REASON, headers=login("leader_320102001000"))
    assert check_problem(r, 403)["code"] == "forbidden_action"
    # No reason worth the name.
    r = client.post(f"/api/v1/households/{code}/reveal", json={"reason": "  ab  "}, headers=login(DISPATCHER))
    assert check_problem(r, 422)["field"] == "reason"
    r = client.post(f"/api/v1/households/{code}/reveal", json={}, headers=login(DISPATCHER))
    assert check_problem(r, 422)["field"] == "reason"
    assert reveals() == before


@pytest.fixture
def late_handlers(app: Any) -> Iterator[dict[str, io.StringIO]]:
    """Log handlers attached after the app was built, as a log shipper or ``echo=True``
    (a handler on ``sqlalchemy.engine`` itself) would: they must get scrubbed records too."""
    streams: dict[str, io.StringIO] = {}
    attached = []
    for name in ("", "sqlalchemy.engine", "uvicorn.access"):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        attached.append((logger, handler))
        streams[name or "root"] = stream
    yield streams
    for logger, handler in attached:
        logger.removeHandler(handler)


def test_no_unmasked_personal_data_in_responses_or_logs(client, login, caplog, db, late_handlers):
    for name in ("shiyu", "uvicorn", "sqlalchemy"):
        caplog.set_level(logging.DEBUG, logger=name)
    with db.unit_of_work(write=False) as s:
        h = s.execute(select(HouseholdGroup).where(HouseholdGroup.lead_phone.is_not(None),
                                                   HouseholdGroup.scope_path.contains(f"/{TOWN}/"))
                      .limit(1)).scalar_one()
        phone, resident_id = h.lead_phone, h.lead_resident_id

    dispatcher = login(DISPATCHER, fresh=True)  # a login inside the capture
    admin = login("admin", fresh=True)
    auditor = login("auditor_city", fresh=True)
    texts: list[str] = []

    def get(url: str, headers: dict[str, str], **kw: Any) -> Any:
        r = client.get(url, headers=headers, **kw)
        texts.append(r.text)
        return r

    assert get("/api/v1/auth/me", dispatcher).status_code == 200
    assert get("/api/v1/grids", dispatcher, params={"unit": TOWN}).status_code == 200
    assert get(f"/api/v1/grids/{h.grid_code}", dispatcher).status_code == 200
    assert get(f"/api/v1/units/{TOWN}/children", dispatcher).status_code == 200
    assert get("/api/v1/users", admin, params={"unit": TOWN}).status_code == 200
    assert get("/api/v1/audit", auditor, params={"limit": 200}).status_code == 200
    # Error paths carrying personal data in the input.
    assert get("/api/v1/grids", dispatcher, params={"unit": phone}).status_code == 422
    assert get(f"/api/v1/units/{resident_id}", dispatcher).status_code == 404
    assert get("/api/v1/geo/locate", dispatcher, params={"lon": phone, "lat": "x"}).status_code == 422
    r = client.post("/api/v1/users", headers=admin, json={**NEW_USER, "username": "pii_x", "phone": phone + "0"})
    texts.append(r.text)
    assert r.status_code == 422
    # Failed logins whose usernames are personal data.
    for who in (phone, resident_id):
        r = client.post("/api/v1/auth/token", data={"username": who, "password": phone})
        texts.append(r.text)
        assert r.status_code == 401
    # A reveal: the response may show the values, the logs may not.
    r = client.post(f"/api/v1/households/{h.code}/reveal", json={"reason": "核实联系方式（日志测试）"},
                    headers=dispatcher)
    assert r.status_code == 200 and r.json()["lead_phone"] == phone
    # What uvicorn's access log would write for such a request.
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET",
                                             f"/api/v1/grids?unit={phone}", "1.1", 422)
    logging.getLogger("shiyu.web").debug("resident %s called from %s", resident_id, phone)

    for text in texts:
        assert find_unmasked(text) == []
    names = {rec.name for rec in caplog.records}
    assert any(n.startswith("sqlalchemy.engine") for n in names), names  # the capture did see SQL
    assert "uvicorn.access" in names and "shiyu.web" in names
    log_text = caplog.text
    assert len(log_text) > 10_000
    assert find_unmasked(log_text) == []
    assert phone not in log_text and resident_id not in log_text
    assert phone[:3] + "****" + phone[-4:] in log_text  # scrubbed, not dropped
    for name, stream in late_handlers.items():
        text = stream.getvalue()
        assert len(text) > (50 if name == "uvicorn.access" else 10_000), name
        assert find_unmasked(text) == [], name
