"""Unit tree 单位树 queries and writes. Reads that face users go through the
jurisdiction scope in ``repository``; these helpers are for services."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shiyu.kit.errors import Invalid
from shiyu.platform.units.models import Unit
from shiyu.platform.units.rules import LEVEL, check_unit_code, child_path


def get(session: Session, code: str) -> Unit | None:
    return session.execute(select(Unit).where(Unit.code == code)).scalar_one_or_none()


def get_many(session: Session, codes: list[str]) -> dict[str, Unit]:
    if not codes:
        return {}
    rows = session.execute(select(Unit).where(Unit.code.in_(codes))).scalars()
    return {u.code: u for u in rows}


def chain_codes(unit: Unit) -> list[str]:
    """Codes from this unit up to the city (self first)."""
    return list(reversed([c for c in unit.path.split("/") if c]))


def admin_unit_of(session: Session, unit: Unit) -> Unit:
    """The administrative unit a unit belongs to: itself, or a department's parent."""
    if unit.is_admin or unit.parent_code is None:
        return unit
    parent = get(session, unit.parent_code)
    assert parent is not None
    return parent


def descendant_count(session: Session, unit: Unit) -> int:
    return session.execute(
        select(func.count()).select_from(Unit).where(Unit.path.startswith(unit.path, autoescape=True))
    ).scalar_one() - 1


def build(code: str, name: str, kind: str, parent: Unit | None, category: str | None = None) -> Unit:
    """A new Unit, validated against the code rules (not yet added to the session)."""
    reason = check_unit_code(code, kind, parent.code if parent else None, parent.kind if parent else None)
    if reason:
        raise Invalid(reason, code="bad_unit_code", field="code", params={"code": code, "reason": reason})
    if not name.strip():
        raise Invalid("name is required", code="required", field="name")
    level = LEVEL[kind] if kind in LEVEL else (parent.level if parent else 1)
    return Unit(code=code, name=name.strip(), kind=kind, level=level,
                parent_code=parent.code if parent else None,
                path=child_path(parent.path if parent else None, code), category=category)
