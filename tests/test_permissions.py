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
    db: Any = None
    items: dict[str, int] | None = None  # relation -> a work item located there
    attachments: dict[str, int] | None = None  # relation -> an attachment of that item


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
    w = World(units, paths, grids, points, households, users, paths["own"], db=db)
    w.items, w.attachments = {}, {}
    for rel in RELATIONS:
        iid, aid = new_item(w, rel, with_attachment=True)
        w.items[rel], w.attachments[rel] = iid, aid
    return w


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d4944415478da6360000000000500010d0a2db40000000049454e44ae426082")


def new_item(w: World, rel: str, *, with_attachment: bool = False) -> tuple[int, int | None]:
    """A fresh hotline item located in the relation's unit, made by the system principal."""
    import base64
    import uuid

    from shiyu.domains.items import service as items
    from shiyu.domains.items.schemas import ItemCreate

    data = ItemCreate(kind="hotline", title=f"矩阵测试 {rel}", unit=w.units[rel], source="hotline",
                      attachments=[{"filename": "a.png", "content_type": "image/png",
                                    "data": base64.b64encode(PNG).decode()}] if with_attachment else [])
    with w.db.unit_of_work() as s:
        created = items.create_item(s, Principal.system("matrix"), data, idempotency_key=uuid.uuid4().hex)
        s.flush()
        att = items.attachments_of(s, created.item.id)
        return created.item.id, (att[0]["id"] if att else None)


def new_dispute(w: World, rel: str) -> int:
    """A dispute in the relation's unit, dispatched to a department that serves it."""
    import uuid

    from shiyu.domains.items import service as items
    from shiyu.domains.items.schemas import ActionIn, ItemCreate

    unit = w.units[rel]
    town = unit if rel != "child" else T1
    system = Principal.system("matrix")
    with w.db.unit_of_work() as s:
        item = items.create_item(s, system, ItemCreate(kind="dispute", title=f"矩阵纠纷 {rel}", unit=unit,
                                                       parties=[{"name": "甲"}, {"name": "乙"}]),
                                 idempotency_key=uuid.uuid4().hex).item
        for action, body in (("accept", ActionIn()), ("register", ActionIn()),
                             ("dispatch", ActionIn(departments=[f"{town}-GA"]))):
            s.flush()
            items.act(s, system, item.id, action, body, if_match=items.etag(item))
        return item.id


def _mediation(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    iid = new_dispute(w, r)
    return c.post(f"/api/v1/items/{iid}/mediation",
                  json={"record": "session", "note": "调解一次", "outcome": "partial"},
                  headers={**h, "If-Match": _etag(w, iid)})


_counter = iter(range(10**6))


def _add_category(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    return c.post("/api/v1/categories", headers=h, json={
        "code": f"HL-MX{next(_counter)}", "name": "矩阵分类", "kind": "hotline"})


def _delete_holiday(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    from datetime import date, timedelta

    from shiyu.domains.items.models import Holiday

    day = date(2031, 1, 6) + timedelta(days=7 * next(_counter))
    with w.db.unit_of_work() as s:
        s.add(Holiday(day=day, is_workday=False, name="矩阵"))
    return c.delete(f"/api/v1/holidays/{day.isoformat()}", headers=h)


def new_supervision(w: World, rel: str) -> tuple[int, int]:
    from shiyu.domains.items import service as items

    iid, _ = new_item(w, rel)
    with w.db.unit_of_work() as s:
        sup = items.supervise(s, Principal.system("matrix"), iid, note="矩阵督办", days=3)
        s.flush()
        return iid, sup.id


def new_duplicate(w: World, rel: str) -> tuple[int, int]:
    from shiyu.domains.items.models import DuplicateLink

    a, _ = new_item(w, rel)
    b, _ = new_item(w, rel)
    with w.db.unit_of_work() as s:
        s.add(DuplicateLink(item_id=a, candidate_id=b, distance_m=10.0))
    return a, b


def new_notification(w: World, unit_code: str, path: str) -> int:
    from shiyu.domains.items.models import Notification

    with w.db.unit_of_work() as s:
        n = Notification(unit_code=unit_code, scope_path=path, item_id=None, kind="test", message="矩阵")
        s.add(n)
        s.flush()
        return n.id


@pytest.fixture(scope="module")
def as_role(login: Callable[..., dict[str, str]], world: World) -> Callable[[str], dict[str, str]]:
    return lambda role: login(f"m_{role}", PASSWORD)


@dataclass(frozen=True)
class Endpoint:
    name: str
    #: The permission the endpoint needs; several separated by "|" mean any of them.
    action: str
    kind: str  # single | list | create
    relations: tuple[str, ...]
    call: Callable[[Any, dict[str, str], World, str], Any]
    #: For lists: the set of ids the principal should see, and the ids returned.
    expected: Callable[[Any, World, str], set[str]] | None = None
    returned: Callable[[Any], set[str]] | None = None
    ok_status: int = 200
    #: What an out-of-scope request gets: 404 for objects, 422 naming the field for inputs.
    deny_status: int = 404
    allowed: tuple[str, ...] = ("own", "child")


def _grid_ids_under(db: Any, path: str, t1_path: str) -> set[str]:
    with db.unit_of_work(write=False) as s:
        return set(s.execute(select(Grid.code).where(
            Grid.layer_code == "unified", Grid.scope_path.startswith(path), Grid.scope_path.startswith(t1_path)
        )).scalars())


def _audit_in_scope(db: Any, world: World, _rel: str) -> set[str]:
    with db.unit_of_work(write=False) as s:
        return {str(x) for x in s.execute(select(AuditEntry.seq).where(
            AuditEntry.scope_path.startswith(world.t1_path))).scalars()}


def _items_in_scope(db: Any, world: World, rel: str) -> set[str]:
    from shiyu.domains.items.models import WorkItem

    with db.unit_of_work(write=False) as s:
        return {str(x) for x in s.execute(select(WorkItem.id).where(
            WorkItem.scope_path.startswith(world.t1_path), WorkItem.scope_path.startswith(world.paths[rel]))).scalars()}


def _item_numbers_in_scope(db: Any, world: World, _rel: str) -> set[str]:
    from shiyu.domains.items.models import WorkItem

    with db.unit_of_work(write=False) as s:
        return set(s.execute(select(WorkItem.number).where(WorkItem.scope_path.startswith(world.t1_path))).scalars())


def _csv_numbers(resp: Any) -> set[str]:
    lines = resp.content.decode("utf-8-sig").splitlines()[1:]
    return {line.split(",", 1)[0] for line in lines if line}


def _notes_in_scope(db: Any, world: World, _rel: str) -> set[str]:
    from shiyu.domains.items.models import Notification

    with db.unit_of_work(write=False) as s:
        return {str(x) for x in s.execute(select(Notification.id).where(
            Notification.scope_path.startswith(world.t1_path))).scalars()}


def _etag(w: World, item_id: int) -> str:
    from shiyu.domains.items.models import WorkItem

    with w.db.unit_of_work(write=False) as s:
        v = s.execute(select(WorkItem.version).where(WorkItem.id == item_id)).scalar_one()
    return f'"{item_id}-{v}"'


def _accept(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    iid, _ = new_item(w, r)
    return c.post(f"/api/v1/items/{iid}/actions/accept", json={}, headers={**h, "If-Match": _etag(w, iid)})


def _upload(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    iid = w.items[r]
    return c.post(f"/api/v1/items/{iid}/attachments", files={"file": ("p.png", PNG, "image/png")},
                  headers={**h, "If-Match": "*"})


def _resolve(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    iid, sid = new_supervision(w, r)
    return c.post(f"/api/v1/items/{iid}/supervisions/{sid}/resolve", headers=h)


def _dismiss(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    a, b = new_duplicate(w, r)
    return c.post(f"/api/v1/items/{a}/duplicates/{b}/dismiss", headers=h)


def _mark_read(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    me = c.get("/api/v1/auth/me", headers=h).json()
    unit = me["unit_code"] if r == "own" else w.units[r]
    with w.db.unit_of_work(write=False) as s:
        path = s.execute(select(Unit.path).where(Unit.code == unit)).scalar_one()
    nid = new_notification(w, unit, path)
    return c.post(f"/api/v1/notifications/{nid}/read", headers=h)


def _list_notes(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    me = c.get("/api/v1/auth/me", headers=h).json()
    with w.db.unit_of_work(write=False) as s:
        path = s.execute(select(Unit.path).where(Unit.code == me["unit_code"])).scalar_one()
    new_notification(w, me["unit_code"], path)
    return c.get("/api/v1/notifications", params={"limit": 500}, headers=h)


def _archived_report(c: Any, h: dict[str, str], w: World, r: str) -> Any:
    from shiyu.domains.reports.api import archive_root

    pdf = archive_root() / "2026-01" / f"{w.units[r]}.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.write_bytes(b"%PDF-1.7 matrix")
    return c.get(f"/api/v1/analysis/reports/2026-01/{w.units[r]}", headers=h)


def _last_month() -> str:
    from datetime import timedelta

    from shiyu.kit.timeutil import utcnow
    from shiyu.platform.workflow.calendar import LOCAL_TZ

    first = utcnow().astimezone(LOCAL_TZ).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


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
    # ---- work items 工单
    Endpoint("POST /items", "item.create", "create", RELATIONS,
             lambda c, h, w, r: c.post("/api/v1/items", headers={**h, "Idempotency-Key": f"m-{r}-{id(h)}-{len(h)}"},
                                       json={"kind": "hotline", "title": f"矩阵上报 {r} {h['Authorization'][-6:]}",
                                             "unit": w.units[r], "source": "hotline"}),
             ok_status=201, deny_status=422),
    Endpoint("GET /items?unit=", "item.read", "list", RELATIONS,
             lambda c, h, w, r: c.get("/api/v1/items", params={"unit": w.units[r], "limit": 500}, headers=h),
             expected=_items_in_scope, returned=lambda resp: {str(i["id"]) for i in resp.json()["items"]}),
    Endpoint("GET /items/export", "item.export", "list", ("own",),
             lambda c, h, w, r: c.get("/api/v1/items/export", params={"format": "csv"}, headers=h),
             expected=_item_numbers_in_scope, returned=_csv_numbers),
    Endpoint("GET /items/{item_id}", "item.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/items/{w.items[r]}", headers=h)),
    Endpoint("GET /items/{item_id}/timeline", "item.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/items/{w.items[r]}/timeline", headers=h)),
    Endpoint("POST /items/{item_id}/actions/{action}", "item.dispatch", "single", RELATIONS, _accept),
    Endpoint("POST /items/{item_id}/reveal", "pii.reveal", "single", RELATIONS,
             lambda c, h, w, r: c.post(f"/api/v1/items/{w.items[r]}/reveal", json={"reason": "权限矩阵核对"},
                                       headers=h)),
    Endpoint("POST /items/{item_id}/attachments", "item.create|item.handle|item.dispatch", "single", RELATIONS,
             _upload, ok_status=201),
    Endpoint("GET /items/{item_id}/attachments/{attachment_id}", "item.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/items/{w.items[r]}/attachments/{w.attachments[r]}", headers=h)),
    Endpoint("POST /items/{item_id}/supervisions", "item.supervise", "single", RELATIONS,
             lambda c, h, w, r: c.post(f"/api/v1/items/{w.items[r]}/supervisions",
                                       json={"note": "矩阵督办", "days": 2}, headers=h), ok_status=201),
    Endpoint("GET /items/{item_id}/supervisions", "item.read", "single", RELATIONS,
             lambda c, h, w, r: c.get(f"/api/v1/items/{w.items[r]}/supervisions", headers=h)),
    Endpoint("POST /items/{item_id}/supervisions/{supervision_id}/resolve", "item.supervise", "single", RELATIONS,
             _resolve),
    Endpoint("POST /items/{item_id}/duplicates/{candidate_id}/dismiss", "item.dispatch", "single", RELATIONS,
             _dismiss, ok_status=204),
    Endpoint("GET /notifications", "item.read", "list", ("own",), _list_notes,
             expected=_notes_in_scope, returned=lambda resp: {str(n["id"]) for n in resp.json()}),
    Endpoint("POST /notifications/{notification_id}/read", "item.read", "single", ("own", "child", "sibling"),
             _mark_read, ok_status=204, allowed=("own",)),
    Endpoint("POST /items/{item_id}/mediation", "item.handle", "single", RELATIONS, _mediation),
    # ---- catalogues 配置: global data, readable by all item readers, changed by admins only
    Endpoint("GET /categories", "item.read", "single", ("own",),
             lambda c, h, w, r: c.get("/api/v1/categories", params={"kind": "hotline"}, headers=h)),
    Endpoint("POST /categories", "item.configure", "single", ("own",), _add_category, ok_status=201),
    Endpoint("PATCH /categories/{code}", "item.configure", "single", ("own",),
             lambda c, h, w, r: c.patch("/api/v1/categories/HL-TYPE", json={"name_en": "Request type"}, headers=h)),
    Endpoint("GET /sla-rules", "item.read", "single", ("own",),
             lambda c, h, w, r: c.get("/api/v1/sla-rules", headers=h)),
    Endpoint("PUT /sla-rules", "item.configure", "single", ("own",),
             lambda c, h, w, r: c.put("/api/v1/sla-rules", headers=h, json={
                 "kind": "hotline", "category": None, "priority": "low", "step": "verify", "duration": "3wd"})),
    Endpoint("GET /holidays", "item.read", "single", ("own",),
             lambda c, h, w, r: c.get("/api/v1/holidays", params={"year": 2026}, headers=h)),
    Endpoint("PUT /holidays", "item.configure", "single", ("own",),
             lambda c, h, w, r: c.put("/api/v1/holidays", headers=h, json={"day": "2030-05-04", "name": "测试"})),
    Endpoint("DELETE /holidays/{day}", "item.configure", "single", ("own",), _delete_holiday, ok_status=204),
    Endpoint("GET /analysis/report", "analysis.read", "single", RELATIONS,
             lambda c, h, w, r: c.get("/api/v1/analysis/report", headers=h, params={
                 "unit": w.units[r], "period": _last_month(), "permutations": 99})),
    Endpoint("GET /analysis/hotspots", "analysis.read", "single", RELATIONS,
             lambda c, h, w, r: c.get("/api/v1/analysis/hotspots", headers=h, params={
                 "unit": w.units[r], "period": _last_month(), "permutations": 99})),
    Endpoint("GET /analysis/warnings", "analysis.read", "single", RELATIONS,
             lambda c, h, w, r: c.get("/api/v1/analysis/warnings", headers=h, params={"unit": w.units[r]})),
    Endpoint("GET /analysis/reports", "analysis.read", "single", RELATIONS,
             lambda c, h, w, r: c.get("/api/v1/analysis/reports", headers=h, params={"unit": w.units[r]})),
    Endpoint("GET /analysis/reports/{period}/{unit_code}", "analysis.read", "single", RELATIONS, _archived_report),
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
    has_action = not ep.action or any(role_can(role, a) for a in ep.action.split("|"))
    if not has_action:
        assert resp.status_code == 403, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert _denial_audited(db, rid), "403 without a denial in the audit log"
        return
    if ep.kind in ("single", "create"):
        ok = 201 if ep.kind == "create" and ep.ok_status == 200 else ep.ok_status
        if rel in ep.allowed:
            assert resp.status_code == ok, resp.text  # no false denial
        else:
            assert resp.status_code == ep.deny_status, resp.text  # out of scope: 404, never 403
            if ep.deny_status == 404:
                assert resp.json()["code"] in ("not_found", "no_grid_here")
            else:
                assert resp.json()["errors"][0]["code"] == "outside_jurisdiction"
            assert _denial_audited(db, rid), "out-of-scope request without a denial in the audit log"
        return
    assert resp.status_code == 200, resp.text
    if ep.name in ("GET /grids?unit=", "GET /items?unit="):
        got = ep.returned(resp) if ep.returned else set()
        want = (_grid_ids_under(db, world.paths[rel], world.t1_path) if ep.name == "GET /grids?unit="
                else _items_in_scope(db, world, rel))
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
        "POST /api/v1/auth/totp/confirm", "GET /healthz", "GET /livez",
    }
    ops = {f"{m.upper()} {p}" for p, item in client.get("/openapi.json").json()["paths"].items() for m in item}
    declared = set()
    for ep in ENDPOINTS:
        method, path = ep.name.split(" ", 1)
        path = path.split("?")[0]
        declared.add(f"{method} /api/v1{path}")
    missing = ops - declared - elsewhere
    assert not missing, f"endpoints missing from the permission matrix: {sorted(missing)}"


# --------------------------------------------------------------------------- the workbench pages 工作台页面
#
# The same matrix for the server-rendered pages, signed in by session cookie (with the
# CSRF header on unsafe methods, as the UI's HTMX requests send it). Forms answered by
# HTMX show a refused action as a 422 fragment in place; the other pages answer as the
# API does. Beyond the status, each write case checks whether the change took effect,
# and every page, whatever the case, must not show the number of an item outside the
# jurisdiction.


@dataclass(frozen=True)
class PageCase:
    name: str
    #: The permission the page needs ("" for any signed-in user).
    action: str
    relations: tuple[str, ...]
    #: (client, headers, world, relation) -> (response, effect): effect() says whether
    #: the page's change took place (None for pages that only read).
    call: Callable[[Any, dict[str, str], World, str], tuple[Any, Callable[[], bool] | None]]
    ok_status: int = 200
    #: What a role without the action gets, and what an object out of scope gets.
    forbid_status: int = 403
    deny_status: int = 404
    allowed: tuple[str, ...] = ("own", "child")
    #: Whether a request outside the jurisdiction must leave a denial in the audit log.
    audited: bool = True


def _page(c: Any, h: dict[str, str], method: str, path: str, **kw: Any) -> Any:
    from shiyu.platform.ui.web import COOKIE
    from shiyu.platform.web.deps import CSRF_HEADER, csrf_token

    token = h["Authorization"].split()[1]
    headers = {"HX-Request": "true", CSRF_HEADER: csrf_token(token)} if method != "GET" else {}
    c.cookies.clear()
    try:
        return c.request(method, path, cookies={COOKIE: token}, headers=headers, follow_redirects=False, **kw)
    finally:
        c.cookies.clear()


def _status_of(w: World, item_id: int) -> str:
    from shiyu.domains.items.models import WorkItem

    with w.db.unit_of_work(write=False) as s:
        return str(s.execute(select(WorkItem.status).where(WorkItem.id == item_id)).scalar_one())


def _exists(w: World, stmt: Any) -> Callable[[], bool]:
    def effect() -> bool:
        with w.db.unit_of_work(write=False) as s:
            return s.execute(stmt).first() is not None
    return effect


def _p_act(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    iid, _ = new_item(w, r)
    resp = _page(c, h, "POST", f"/items/{iid}/act/accept", data={"etag": _etag(w, iid)})
    return resp, lambda: _status_of(w, iid) == "accepted"


def _p_bulk(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    iid, _ = new_item(w, r)
    resp = _page(c, h, "POST", "/inbox/bulk", data={"action": "accept", "ids": [str(iid)]})
    return resp, lambda: _status_of(w, iid) == "accepted"


def _p_supervise(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from shiyu.domains.items.models import Supervision

    iid, _ = new_item(w, r)
    resp = _page(c, h, "POST", f"/items/{iid}/supervise", data={"note": "矩阵督办", "days": "3"})
    return resp, _exists(w, select(Supervision.id).where(Supervision.item_id == iid))


def _p_dismiss(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from shiyu.domains.items.models import DuplicateLink

    a, b = new_duplicate(w, r)
    resp = _page(c, h, "POST", f"/items/{a}/dismiss/{b}")
    return resp, _exists(w, select(DuplicateLink.id).where(
        DuplicateLink.item_id == a, DuplicateLink.candidate_id == b, DuplicateLink.state == "dismissed"))


def _p_reveal(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    iid, _ = new_item(w, r)
    resp = _page(c, h, "POST", f"/items/{iid}/reveal", data={"reason": "权限矩阵核对"})
    return resp, _exists(w, select(AuditEntry.seq).where(
        AuditEntry.action == "pii.reveal", AuditEntry.object_id == str(iid), AuditEntry.result == "ok"))


def _p_report(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from shiyu.domains.items.models import IdempotencyKey

    key = f"pm-{r}-{next(_counter)}"
    lon, lat = w.points[r]
    resp = _page(c, h, "POST", "/report", data={
        "kind": "event", "title": f"页面矩阵上报 {r}", "description": "权限矩阵", "category": "EV-05-01",
        "priority": "normal", "lon": str(lon), "lat": str(lat), "key": key})
    return resp, _exists(w, select(IdempotencyKey.key).where(IdempotencyKey.key == key))


def _p_new_user(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    name = f"pm_{r}_{next(_counter)}"
    resp = _page(c, h, "POST", "/admin/users", data={
        "username": name, "password": PASSWORD, "role": "grid_worker", "unit_code": w.units[r]})
    return resp, _exists(w, select(User.id).where(User.username == name))


def _p_add_category(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from shiyu.domains.items.models import Category

    code = f"HL-PM{next(_counter)}"
    resp = _page(c, h, "POST", "/admin/taxonomy", data={"code": code, "name": "页面矩阵分类", "kind": "hotline"})
    return resp, _exists(w, select(Category.code).where(Category.code == code))


def _p_toggle(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from shiyu.domains.items.models import Category

    code = f"HL-PT{next(_counter)}"
    with w.db.unit_of_work() as s:
        s.add(Category(code=code, name="页面矩阵开关", kind="hotline", active=True))
    resp = _page(c, h, "POST", f"/admin/taxonomy/{code}/toggle")
    return resp, _exists(w, select(Category.code).where(Category.code == code, Category.active.is_(False)))


def _p_deadline(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from shiyu.domains.items.models import Category, SlaRule

    code = f"HL-PD{next(_counter)}"
    with w.db.unit_of_work() as s:
        s.add(Category(code=code, name="页面矩阵时限", kind="hotline", active=True))
    resp = _page(c, h, "POST", "/admin/deadlines", data={
        "kind": "hotline", "category": code, "step": "handle", "duration": "4wd"})
    return resp, _exists(w, select(SlaRule.id).where(SlaRule.category == code))


def _p_holiday(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from datetime import date, timedelta

    from shiyu.domains.items.models import Holiday

    day = date(2041, 1, 7) + timedelta(days=7 * next(_counter))
    resp = _page(c, h, "POST", "/admin/holidays", data={"day": day.isoformat(), "name": "页面矩阵"})
    return resp, _exists(w, select(Holiday.day).where(Holiday.day == day))


def _p_holiday_delete(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    from datetime import date, timedelta

    from shiyu.domains.items.models import Holiday

    day = date(2051, 1, 8) + timedelta(days=7 * next(_counter))
    with w.db.unit_of_work() as s:
        s.add(Holiday(day=day, is_workday=False, name="页面矩阵"))
    resp = _page(c, h, "POST", f"/admin/holidays/{day.isoformat()}/delete")
    gone = _exists(w, select(Holiday.day).where(Holiday.day == day))
    return resp, lambda: not gone()


def _get(path: str, params: Callable[[World, str], dict[str, Any]] | None = None) -> Callable[..., Any]:
    def call(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, None]:
        return _page(c, h, "GET", path.format(item_id=w.items[r] if w.items else 0),
                     params=params(w, r) if params else None), None
    return call


def _located_grid(c: Any, h: dict[str, str], w: World, r: str) -> tuple[Any, Callable[[], bool]]:
    lon, lat = w.points[r]
    resp = _page(c, h, "GET", "/map/locate", params={"lon": lon, "lat": lat})
    return resp, lambda: resp.json()["grid"] == w.grids[r]


def _unit(w: World, r: str) -> dict[str, Any]:
    return {"unit": w.units[r]}


_LISTS = ("own", "child", "parent")  # a list narrowed to a unit that contains part of the jurisdiction

PAGES = [
    PageCase("GET /inbox", "item.read", RELATIONS, _get("/inbox", _unit), deny_status=200, allowed=_LISTS),
    PageCase("POST /inbox/bulk", "item.dispatch", RELATIONS, _p_bulk, ok_status=204, forbid_status=204,
             deny_status=204),
    PageCase("GET /items/{item_id}", "item.read", RELATIONS, _get("/items/{item_id}")),
    PageCase("POST /items/{item_id}/act/{action}", "item.dispatch", RELATIONS, _p_act, ok_status=204,
             forbid_status=422, deny_status=422),
    PageCase("POST /items/{item_id}/supervise", "item.supervise", RELATIONS, _p_supervise, ok_status=204,
             forbid_status=422, deny_status=422),
    PageCase("POST /items/{item_id}/dismiss/{candidate_id}", "item.dispatch", RELATIONS, _p_dismiss, ok_status=204,
             forbid_status=422, deny_status=422),
    PageCase("POST /items/{item_id}/reveal", "pii.reveal", RELATIONS, _p_reveal),
    PageCase("GET /report", "", ("own",), _get("/report")),
    PageCase("POST /report", "item.create", ("child", "sibling", "unrelated"), _p_report, ok_status=204,
             forbid_status=422, deny_status=422, allowed=("child",)),
    PageCase("GET /map", "", ("own",), _get("/map")),
    PageCase("GET /map/items.geojson", "item.read", ("own",), _get("/map/items.geojson")),
    PageCase("GET /map/grids.geojson", "item.read", ("own",), _get("/map/grids.geojson")),
    PageCase("GET /map/locate", "grid.read", ("child", "sibling", "unrelated"), _located_grid, deny_status=200,
             allowed=("child",)),
    PageCase("GET /dashboard", "item.read", RELATIONS, _get("/dashboard", _unit), deny_status=200, allowed=_LISTS),
    PageCase("GET /analysis", "analysis.read", RELATIONS, _get("/analysis", _unit), forbid_status=200,
             deny_status=200, allowed=("own", "child")),
    PageCase("GET /admin", "", ("own",), _get("/admin")),
    PageCase("GET /admin/users", "user.read", ("own",), _get("/admin/users")),
    PageCase("POST /admin/users", "user.write", RELATIONS, _p_new_user, ok_status=204, forbid_status=422,
             deny_status=422),
    PageCase("GET /admin/taxonomy", "item.configure", ("own",), _get("/admin/taxonomy")),
    PageCase("POST /admin/taxonomy", "item.configure", ("own",), _p_add_category, ok_status=204, forbid_status=422),
    PageCase("POST /admin/taxonomy/{code}/toggle", "item.configure", ("own",), _p_toggle, ok_status=204),
    PageCase("GET /admin/deadlines", "item.configure", ("own",), _get("/admin/deadlines")),
    PageCase("POST /admin/deadlines", "item.configure", ("own",), _p_deadline, ok_status=204, forbid_status=422),
    PageCase("GET /admin/holidays", "item.configure", ("own",), _get("/admin/holidays")),
    PageCase("POST /admin/holidays", "item.configure", ("own",), _p_holiday, ok_status=204, forbid_status=422),
    PageCase("POST /admin/holidays/{day}/delete", "item.configure", ("own",), _p_holiday_delete, ok_status=204,
             forbid_status=422),
]

PAGE_CASES = [
    pytest.param(p, role, rel, id=f"{p.name}|{role}|{rel}")
    for p in PAGES for role in ROLES for rel in p.relations
]


def _foreign_numbers(w: World) -> dict[str, str]:
    """The numbers of the world's items outside T1 (parent, sibling, unrelated)."""
    from shiyu.domains.items.models import WorkItem

    assert w.items is not None
    with w.db.unit_of_work(write=False) as s:
        return {rel: s.execute(select(WorkItem.number).where(WorkItem.id == w.items[rel])).scalar_one()
                for rel in ("parent", "sibling", "unrelated")}


@pytest.mark.parametrize(("page", "role", "rel"), PAGE_CASES)
def test_page_matrix(page: PageCase, role: str, rel: str, client: Any, db: Any, world: World, as_role: Any) -> None:
    resp, effect = page.call(client, as_role(role), world, rel)
    rid = resp.headers["x-request-id"]
    has_action = not page.action or any(role_can(role, a) for a in page.action.split("|"))
    for where, number in _foreign_numbers(world).items():
        assert number not in resp.text, f"the {where} item's number shown"
    if not has_action:
        assert resp.status_code == page.forbid_status, resp.text
        assert effect is None or not effect(), "a role without the permission changed something"
        assert _denial_audited(db, rid), "a refused page without a denial in the audit log"
    elif rel in page.allowed:
        assert resp.status_code == page.ok_status, resp.text  # no false denial
        assert effect is None or effect(), "the page answered but nothing changed"
    else:
        assert resp.status_code == page.deny_status, resp.text
        assert effect is None or not effect(), "a change outside the jurisdiction took effect"
        assert _denial_audited(db, rid), "a request outside the jurisdiction without a denial in the audit log"


def test_page_matrix_covers_every_page(app: Any) -> None:
    """Every page of the staff workbench is in the page matrix or deliberately elsewhere."""
    from fastapi.routing import APIRoute

    elsewhere = {  # the caller's own session and language (test_auth, test_i18n), the public citizen pages
        "GET /", "GET /login", "POST /login", "POST /logout", "GET /lang/{code}",
        "GET /citizen/report", "POST /citizen/report", "GET /citizen/attributes", "GET /citizen/nearby",
        "GET /citizen/follow",
    }
    def routes(found: list[Any], prefix: str = "") -> Any:
        for route in found:
            inner = getattr(route, "original_router", None)  # FastAPI 0.165 includes routers lazily
            if inner is not None:
                yield from routes(inner.routes, prefix + (getattr(route.include_context, "prefix", "") or ""))
            elif isinstance(route, APIRoute):
                yield prefix + route.path, route

    # The API (including Open311's, the public one) is in the matrix above and test_open311.
    pages = {f"{m} {path}" for path, route in routes(app.routes)
             if not route.include_in_schema and not path.startswith(("/api/", "/open311/")) for m in route.methods}
    assert len(pages) > 20, "the page routes were not found"
    declared = {p.name for p in PAGES}
    missing = pages - declared - elsewhere
    assert not missing, f"pages missing from the page matrix: {sorted(missing)}"
    assert not (declared - pages), f"the page matrix names pages that do not exist: {sorted(declared - pages)}"
