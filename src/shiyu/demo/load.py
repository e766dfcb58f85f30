"""Load a demo city 演示城市 into the database through the same services real data uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shapely.geometry import mapping
from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.demo.calls import load_calls
from shiyu.demo.city import DemoCity, city_to_geojson, generate_city
from shiyu.demo.items import load_history
from shiyu.domains.geo import service as geo
from shiyu.domains.geo.models import Grid, HouseholdGroup
from shiyu.kit import meta
from shiyu.kit.timeutil import as_utc, utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal
from shiyu.platform.identity import service as identity
from shiyu.platform.identity.models import User
from shiyu.platform.units import service as units

Step = Callable[[str, int], Callable[[int], None]]


@dataclass
class LoadReport:
    units: int
    grids: int
    departments: int
    households: int
    users: int
    items: int = 0  # demo history 演示历史工单 (``shiyu.demo.items``)
    calls: int = 0  # demo police calls and cases 演示警情案情 (``shiyu.demo.calls``)


def _noop_step(_label: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def _layer_geojson(grids: list[Any]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": mapping(g.polygon),
             "properties": {"code": g.code, "name": g.name, "kind": "grid", "parent": g.village_code}}
            for g in grids
        ],
    }


def load_city(session: Session, city: DemoCity, *, step: Step = _noop_step) -> LoadReport:
    """Idempotent: loading the same city twice adds nothing the second time."""
    system = Principal.system("demo-loader")
    fc = city_to_geojson(city)
    rep = geo.import_geojson(session, system, fc, layer="unified",
                             progress=step("geography 地理", len(fc["features"])))
    for layer, grids in city.layer_grids.items():
        geo.import_geojson(session, system, _layer_geojson(grids), layer=layer,
                           progress=step(f"layer {layer}", len(grids)))
    tick = step("departments 职能部门", len(city.departments))
    existing = units.get_many(session, [d.code for d in city.departments])
    parents = units.get_many(session, sorted({d.parent_code for d in city.departments}))
    added_depts = 0
    for d in city.departments:
        if d.code not in existing:
            unit = units.build(d.code, d.name, "department", parents[d.parent_code], category=d.category)
            session.add(unit)
            audit.record(session, system, "unit.create", object_type="unit", object_id=d.code,
                         scope_path=unit.path, detail={"name": d.name, "kind": "department"})
            added_depts += 1
        tick(1)
    session.flush()
    tick = step("ten-household units 十联户", len(city.households))
    have = set(session.execute(select(HouseholdGroup.code)).scalars())
    grid_paths = dict(session.execute(select(Grid.code, Grid.scope_path)).all())
    added_hh = 0
    for h in city.households:
        if h.code not in have:
            session.add(HouseholdGroup(code=h.code, name=h.name, grid_code=h.grid_code,
                                       scope_path=grid_paths[h.grid_code], lead_name=h.lead_name,
                                       lead_phone=h.lead_phone, lead_resident_id=h.lead_resident_id,
                                       households=h.households))
            audit.record(session, system, "household_group.create", object_type="household_group",
                         object_id=h.code, scope_path=grid_paths[h.grid_code])
            added_hh += 1
        tick(1)
    session.flush()
    tick = step("users 用户", len(city.users))
    have_users = set(session.execute(select(User.username)).scalars())
    added_users = 0
    for u in city.users:
        if u.username not in have_users:
            identity.create_user(session, system, username=u.username, password=u.password, role=u.role,
                                 unit_code=u.unit_code, display_name=u.display_name, phone=u.phone)
            added_users += 1
        tick(1)
    meta.put(session, "demo", {
        "size": city.size, "seed": city.seed,
        "accounts": [{"username": u.username, "role": u.role, "unit_code": u.unit_code} for u in city.users],
    })
    return LoadReport(units=rep.created - rep.grids_created, grids=rep.grids_created, departments=added_depts,
                      households=added_hh, users=added_users)


def load_demo(session: Session, size: str = "small", seed: int = 1, *, step: Step = _noop_step,
              history: bool = True, now: datetime | None = None) -> LoadReport:
    """The city, then (unless ``history`` is false) its history of work items and its police
    calls and cases 警情案情, both ending at ``now`` (default: the current time). Idempotent."""
    city = generate_city(size, seed)
    report = load_city(session, city, step=step)
    if history:
        now = as_utc(now or utcnow()).replace(microsecond=0)
        hist = load_history(session, city, seed=seed, now=now, step=step)
        report.items = 0 if hist.skipped else hist.items
        report.calls = load_calls(session, city, seed=seed, now=now, step=step)
    return report


def demo_accounts(session: Session, password: str) -> list[dict[str, Any]]:
    """The demo accounts with their password (and admins' TOTP secrets, needed to log in)."""
    info = meta.get(session, "demo") or {}
    accounts = info.get("accounts", [])
    secrets = dict(session.execute(select(User.username, User.totp_secret).where(User.totp_enabled.is_(True))).all())
    out = []
    for a in accounts:
        row = {**a, "password": password}
        if a["username"] in secrets:
            row["totp_secret"] = secrets[a["username"]]
        out.append(row)
    return out
