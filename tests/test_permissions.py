"""The permission matrix 权限矩阵: every endpoint x role x (own, child, parent, sibling,
unrelated) jurisdiction.

Each endpoint is declared once with how to build a request against an object in a
given jurisdiction; the matrix runs it for every role. Matrix users of all seven
roles sit in the same town T1, so the relations mean the same for each:

    own = T1, child = a village of T1, parent = T1's district, sibling = another town
    of the same district, unrelated = a town of another district.

Expected: allowed when the role has the action and the object lies in own/child;
403 when the role never has the action; 404 for single objects out of scope (so
existence does not leak); lists show only what lies inside the jurisdiction. Every
403/404 must be audited as a denial with the request's id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import shapely
from sqlalchemy import func, select

from shiyu.domains.geo.models import Grid, HouseholdGroup
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.rules import ROLES, role_can
from shiyu.platform.identity import service as identity
from shiyu.platform.identity.models import User
from shiyu.platform.units.models import Unit

RELATIONS = ("own", "child", "parent", "sibling", "unrelated")
PASSWORD = "Matrix#2026x"
T1, T2, T_OTHER, D1 = "320102001000", "320102002000", "320103001000", "320102000000"
REL_UNIT = {"own": T1, "parent": D1, "sibling": T2, "unrelated": T_OTHER}


@dataclass
class World:
    units: dict[str, str]  # relation -> unit code
    paths: dict[str, str]  # relation -> unit path
    grids: dict[str, str]  # relation -> grid code (grids live in villages: child/sibling/unrelated)
    points: dict[str, tuple[float, float]]
    households: dict[str, str]
    users: dict[str, int]  # relation -> id of a user bound there
    t1_path: str


@pytest.fixture(scope="module")
def world(db: Any) -> World:
    with db.unit_of_work() as s:
        v1 = s.execute(select(Unit.code).where(Unit.parent_code == T1, Unit.kind == "village")
                       .order_by(Unit.code)).scalars().first()
        units = {**REL_UNIT, "child": v1}
        paths = {rel: s.execute(select(Unit.path).where(Unit.code == code)).scalar_one()
                 for rel, code in units.items()}
        grids: dict[str, str] = {}
        points: dict[str, tuple[float, float]] = {}
        households: dict[str, str] = {}
        for rel in ("child", "sibling", "unrelated"):
            g = s.execute(select(Grid).where(Grid.layer_code == "unified",
                                             Grid.scope_path.startswith(paths[rel]))
                          .order_by(Grid.code)).scalars().first()
            assert g is not None
            grids[rel] = g.code
            p = shapely.from_wkb(bytes(g.geom)).representative_point()
            points[rel] = (p.x, p.y)
            households[rel] = s.execute(select(HouseholdGroup.code).where(HouseholdGroup.grid_code == g.code)
                                        .order_by(HouseholdGroup.code)).scalars().first()
        system = Principal.system("matrix-setup")
        for role in ROLES:
            unit = f"{T1}-GA" if role == "department_handler" else T1
            if s.execute(select(User.id).where(User.username == f"m_{role}")).first() is None:
                identity.create_user(s, system, username=f"m_{role}", password=PASSWORD, role=role, unit_code=unit)
        users: dict[str, int] = {}
        for rel, code in units.items():
            name = f"t_{rel}"
            row = s.execute(select(User.id).where(User.username == name)).scalar_one_or_none()
            if row is None:
                row = identity.create_user(s, system, username=name, password=PASSWORD, role="leader",
                                           unit_code=code).user.id
            users[rel] = row
    return World(units, paths, grids, points, households, users, paths["own"])


@pytest.fixture(scope="module")
def as_role(login: Callable[..., dict[str, str]], world: World) -> Callable[[str], dict[str, str]]:
    return lambda role: login(f"m_{role}", PASSWORD)


@dataclass(frozen=True)
class Endpoint:
    name: str
    action: str
    kind: str  # single | list | create
    relations: tuple[str, ...]
    call: Callable[[Any, dict[str, str], World, str], Any]
    #: For lists: the set of ids the principal should see, and the ids returned.
    expected: Callable[[Any, World, str], set[str]] | None = None
    returned: Callable[[Any], set[str]] | None = None


def _grid_ids_under(db: Any, path: str, t1_path: str) -> set[str]:
    with db.unit_of_work(write=False) as s:
        return set(s.execute(select(Grid.code).where(
            Grid.layer_code == "unified", Grid.scope_path.startswith(path), Grid.scope_path.startswith(t1_path)
        )).scalars())


def _audit_in_scope(db: Any, world: World, _rel: str) -> set[str]:
    with db.unit_of_work(write=False) as s:
        return {str(x) for x in s.execute(select(AuditEntry.seq).where(
            AuditEntry.scope_path.startswith(world.t1_path))).scalars()}


def _users_in_scope(db: Any, world: World, _rel: str) -> set[str]:
    with db.unit_of_work(write=False) as s:
        return {str(x) for x in s.execute(select(User.id).where(User.scope_path.startswith(world.t1_path))).scalars()}


ENDPOINTS = [
    Endpoint("GET /units/{code}", "unit.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/units/{w.units[r]}", headers=h)),
    Endpoint("GET /units/{code}/children", "unit.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/units/{w.units[r]}/children", headers=h)),
    Endpoint("GET /grids/{code}", "grid.read", "single", ("child", "sibling", "unrelated"),
             lambda c, h, w, r: c.get(f"/api/v1/grids/{w.grids[r]}", headers=h)),
    Endpoint("GET /geo/locate", "grid.read", "single", ("child", "sibling", "unrelated"),
             lambda c, h, w, r: c.get("/api/v1/geo/locate", params={"lon": w.points[r][0], "lat": w.points[r][1]},
                                      headers=h)),
    Endpoint("POST /households/{code}/reveal", "pii.reveal", "single", ("child", "sibling", "unrelated"),
             lambda c, h, w, r: c.post(f"/api/v1/households/{w.households[r]}/reveal",
                                       json={"reason": "permission matrix check"}, headers=h)),
    Endpoint("GET /users/{user_id}", "user.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/users/{w.users[r]}", headers=h)),
    Endpoint("POST /users", "user.write", "create", RELATIONS,
             lambda c, h, w, r: c.post("/api/v1/users", headers=h, json={
                 "username": f"new_{r}_{abs(hash(h['Authorization'])) % 10**8}", "password": PASSWORD,
                 "role": "grid_worker", "unit_code": w.units[r]})),
    Endpoint("GET /grids?unit=", "grid.read", "list", RELATIONS,
             lambda c, h, w, r: c.get("/api/v1/grids", params={"unit": w.units[r], "limit": 5000}, headers=h),
             expected=None, returned=lambda resp: {g["code"] for g in resp.json()["items"]}),
    Endpoint("GET /audit", "audit.read", "list", ("own",),
             lambda c, h, w, r: c.get("/api/v1/audit", params={"limit": 1000}, headers=h),
             expected=_audit_in_scope, returned=lambda resp: {str(e["seq"]) for e in resp.json()["items"]}),
    Endpoint("GET /users", "user.read", "list", ("own",),
             lambda c, h, w, r: c.get("/api/v1/users", params={"limit": 500}, headers=h),
             expected=_users_in_scope, returned=lambda resp: {str(u["id"]) for u in resp.json()}),
    Endpoint("GET /auth/me", "", "list", ("own",),
             lambda c, h, w, r: c.get("/api/v1/auth/me", headers=h), expected=None, returned=None),
]

CASES = [
    pytest.param(ep, role, rel, id=f"{ep.name}|{role}|{rel}")
    for ep in ENDPOINTS for role in ROLES for rel in ep.relations
]


def _denial_audited(db: Any, request_id: str) -> bool:
    with db.unit_of_work(write=False) as s:
        return s.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.request_id == request_id, AuditEntry.result == "denied")).scalar_one() > 0


@pytest.mark.parametrize(("ep", "role", "rel"), CASES)
def test_matrix(ep: Endpoint, role: str, rel: str, client: Any, db: Any, world: World, as_role: Any) -> None:
    headers = as_role(role)
    resp = ep.call(client, headers, world, rel)
    rid = resp.headers["x-request-id"]
    has_action = not ep.action or role_can(role, ep.action)
    if not has_action:
        assert resp.status_code == 403, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert _denial_audited(db, rid), "403 without a denial in the audit log"
        return
    if ep.kind in ("single", "create"):
        if rel in ("own", "child"):
            assert resp.status_code == (201 if ep.kind == "create" else 200), resp.text  # no false denial
        else:
            assert resp.status_code == 404, resp.text  # out of scope: 404, never 403
            assert resp.json()["code"] in ("not_found", "no_grid_here")
            assert _denial_audited(db, rid), "404 out-of-scope without a denial in the audit log"
        return
    assert resp.status_code == 200, resp.text
    if ep.name == "GET /grids?unit=":
        got = ep.returned(resp) if ep.returned else set()
        want = _grid_ids_under(db, world.paths[rel], world.t1_path)
        assert got == want
        if rel in ("own", "child", "parent"):
            assert got, "no false denial: grids inside the jurisdiction must be listed"
        else:
            assert not got
            assert _denial_audited(db, rid), "listing a unit outside the jurisdiction must be audited"
        return
    if ep.expected and ep.returned:
        got = ep.returned(resp)
        want = ep.expected(db, world, rel)
        assert got, "lists inside the jurisdiction must not come back empty"
        assert got <= want, f"{len(got - want)} entries outside the jurisdiction leaked"


def test_matrix_covers_every_api_operation(client: Any) -> None:
    """Every operation in the OpenAPI document is in the matrix or deliberately elsewhere."""
    elsewhere = {  # tested in test_auth.py: they act on the caller's own account only
        "POST /api/v1/auth/token", "POST /api/v1/auth/logout", "POST /api/v1/auth/totp/enroll",
        "POST /api/v1/auth/totp/confirm", "GET /healthz",
    }
    ops = {f"{m.upper()} {p}" for p, item in client.get("/openapi.json").json()["paths"].items() for m in item}
    declared = set()
    for ep in ENDPOINTS:
        method, path = ep.name.split(" ", 1)
        path = path.split("?")[0]
        declared.add(f"{method} /api/v1{path}")
    missing = ops - declared - elsewhere
    assert not missing, f"endpoints missing from the permission matrix: {sorted(missing)}"
