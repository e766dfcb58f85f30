"""Catalogue administration 配置管理: taxonomy 分类, deadlines 时限 and the holiday
calendar 节假日. Everyone who reads items may read these; only admins change them
(``item.configure``). Every change is audited."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from shiyu.domains.items import config
from shiyu.domains.items.models import Category, Holiday, SlaRule
from shiyu.domains.items.rules import KINDS, PRIORITIES
from shiyu.kit.errors import Conflict, Invalid, NotFound
from shiyu.platform.audit import service as audit
from shiyu.platform.audit.guard import check_action
from shiyu.platform.web.deps import PrincipalDep, SessionDep
from shiyu.platform.workflow.calendar import Duration

router = APIRouter(prefix="/api/v1", tags=["catalogues"])
CODE_RE = re.compile(r"^[A-Z]{2}(-[0-9A-Z]{1,6}){1,3}$")
STEPS = ("accept", "dispatch", "acknowledge", "handle", "verify", "extension", "supervision")


class CategoryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    name_en: str
    kind: str
    parent_code: str | None
    public: bool
    domain: str | None
    department: str | None
    active: bool


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=4, max_length=32, pattern=CODE_RE.pattern)
    name: str = Field(min_length=1, max_length=100)
    name_en: str = Field(default="", max_length=200)
    kind: str = Field(pattern="^(event|dispute|petition|hotline)$")
    parent_code: str | None = Field(default=None, max_length=32)
    public: bool = False
    domain: str | None = Field(default=None, max_length=32)
    department: str | None = Field(default=None, max_length=32)


class CategoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    name_en: str | None = Field(default=None, max_length=200)
    public: bool | None = None
    department: str | None = Field(default=None, max_length=32)
    active: bool | None = None


@router.get("/categories", response_model=list[CategoryRead], summary="The taxonomy 分类")
def list_categories(session: SessionDep, principal: PrincipalDep,
                    kind: Annotated[str | None, Query(pattern="^(event|dispute|petition|hotline)$")] = None,
                    active: bool | None = None) -> list[CategoryRead]:
    check_action(session, principal, "item.read", object_type="category")
    stmt = select(Category).order_by(Category.code)
    if kind:
        stmt = stmt.where(Category.kind == kind)
    if active is not None:
        stmt = stmt.where(Category.active.is_(active))
    return [CategoryRead.model_validate(c) for c in session.execute(stmt).scalars()]


@router.post("/categories", response_model=CategoryRead, status_code=201, summary="Add a category (admin)")
def add_category(body: CategoryIn, session: SessionDep, principal: PrincipalDep) -> CategoryRead:
    check_action(session, principal, "item.configure", object_type="category")
    if session.get(Category, body.code) is not None:
        raise Conflict("category exists", code="conflict", field="code")
    if body.parent_code is not None:
        parent = session.get(Category, body.parent_code)
        if parent is None or parent.kind != body.kind or not body.code.startswith(parent.code + "-"):
            raise Invalid("bad parent", code="invalid", field="parent_code")
    cat = Category(**body.model_dump())
    session.add(cat)
    session.flush()
    audit.record(session, principal, "category.create", object_type="category", object_id=cat.code,
                 detail={"name": cat.name, "kind": cat.kind})
    config.invalidate()
    return CategoryRead.model_validate(cat)


@router.patch("/categories/{code}", response_model=CategoryRead, summary="Change a category (admin)")
def patch_category(code: Annotated[str, Path(max_length=32, pattern=CODE_RE.pattern)], body: CategoryPatch,
                   session: SessionDep, principal: PrincipalDep) -> CategoryRead:
    check_action(session, principal, "item.configure", object_type="category")
    cat = session.get(Category, code)
    if cat is None:
        raise NotFound("category not found", params={"what": "category", "id": code})
    changes = body.model_dump(exclude_unset=True)
    nulls = [k for k in ("name", "name_en", "public", "active") if k in changes and changes[k] is None]
    if nulls:
        raise Invalid("may not be null", code="invalid", field=nulls[0])
    before = {k: getattr(cat, k) for k in changes}
    for k, v in changes.items():
        setattr(cat, k, v)
    audit.record(session, principal, "category.update", object_type="category", object_id=code,
                 detail={"before": before, "after": changes})
    config.invalidate()
    return CategoryRead.model_validate(cat)


class SlaRuleIO(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    kind: str = Field(pattern="^(event|dispute|petition|hotline)$")
    category: str | None = Field(default=None, max_length=32)
    priority: str | None = Field(default=None, pattern="^(low|normal|high|urgent)$")
    step: str = Field(pattern="^(" + "|".join(STEPS) + ")$")
    duration: str = Field(max_length=32, description='"30m", "2h", "15d" (calendar days), "5wd" (working days)')


@router.get("/sla-rules", response_model=list[SlaRuleIO], summary="Deadline configuration 时限")
def list_sla(session: SessionDep, principal: PrincipalDep) -> list[SlaRuleIO]:
    check_action(session, principal, "item.read", object_type="sla_rule")
    rows = session.execute(select(SlaRule).order_by(SlaRule.kind, SlaRule.category, SlaRule.priority,
                                                    SlaRule.step)).scalars()
    return [SlaRuleIO.model_validate(r) for r in rows]


@router.put("/sla-rules", response_model=SlaRuleIO, summary="Set one deadline rule (admin)")
def put_sla(body: SlaRuleIO, session: SessionDep, principal: PrincipalDep) -> SlaRuleIO:
    check_action(session, principal, "item.configure", object_type="sla_rule")
    try:
        canonical = str(Duration.parse(body.duration))
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid", field="duration") from exc
    if body.category and session.get(Category, body.category) is None:
        raise Invalid("unknown category", code="unknown_category", field="category")
    assert body.kind in KINDS and (body.priority is None or body.priority in PRIORITIES)
    row = session.execute(select(SlaRule).where(
        SlaRule.kind == body.kind, SlaRule.category.is_(None) if body.category is None else
        SlaRule.category == body.category, SlaRule.priority.is_(None) if body.priority is None else
        SlaRule.priority == body.priority, SlaRule.step == body.step)).scalar_one_or_none()
    before = row.duration if row else None
    if row is None:
        row = SlaRule(kind=body.kind, category=body.category, priority=body.priority, step=body.step,
                      duration=canonical)
        session.add(row)
    else:
        row.duration = canonical
    session.flush()
    audit.record(session, principal, "sla_rule.set", object_type="sla_rule", object_id=row.id,
                 detail={"key": [body.kind, body.category, body.priority, body.step], "before": before,
                         "after": canonical})
    config.invalidate()
    return SlaRuleIO.model_validate(row)


class HolidayIO(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    day: date
    is_workday: bool = Field(default=False, description="true: a weekend day worked (调休)")
    name: str = Field(default="", max_length=50)


@router.get("/holidays", response_model=list[HolidayIO], summary="Holiday calendar 节假日")
def list_holidays(session: SessionDep, principal: PrincipalDep,
                  year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> list[HolidayIO]:
    check_action(session, principal, "item.read", object_type="holiday")
    stmt = select(Holiday).order_by(Holiday.day)
    if year:
        stmt = stmt.where(Holiday.day >= date(year, 1, 1), Holiday.day <= date(year, 12, 31))
    return [HolidayIO.model_validate(h) for h in session.execute(stmt).scalars()]


@router.put("/holidays", response_model=HolidayIO, summary="Set a holiday or worked weekend day (admin)")
def put_holiday(body: HolidayIO, session: SessionDep, principal: PrincipalDep) -> HolidayIO:
    check_action(session, principal, "item.configure", object_type="holiday")
    weekend = body.day.weekday() >= 5
    if body.is_workday and not weekend:
        raise Invalid("only a Saturday or Sunday can be a worked day", code="invalid", field="is_workday")
    row = session.get(Holiday, body.day)
    if row is None:
        row = Holiday(day=body.day, is_workday=body.is_workday, name=body.name)
        session.add(row)
    else:
        row.is_workday, row.name = body.is_workday, body.name
    session.flush()
    audit.record(session, principal, "holiday.set", object_type="holiday", object_id=body.day.isoformat(),
                 detail={"is_workday": body.is_workday, "name": body.name})
    config.invalidate()
    return HolidayIO.model_validate(row)


@router.delete("/holidays/{day}", status_code=204, summary="Remove a calendar entry (admin)")
def delete_holiday(day: date, session: SessionDep, principal: PrincipalDep) -> None:
    check_action(session, principal, "item.configure", object_type="holiday")
    row = session.get(Holiday, day)
    if row is None:
        raise NotFound("no such calendar entry", params={"what": "holiday", "id": day.isoformat()})
    session.delete(row)
    audit.record(session, principal, "holiday.delete", object_type="holiday", object_id=day.isoformat())
    config.invalidate()
