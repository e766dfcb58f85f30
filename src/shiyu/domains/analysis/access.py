"""Who may analyse which unit 分析权限: the one check every analysis read goes through."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shiyu.kit.errors import NotFound
from shiyu.platform.audit import guard
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit

#: The action that lets a principal read aggregate figures in a subtree.
ACTION = "analysis.read"


def resolve_unit(session: Session, principal: Any, unit_code: str, *, object_type: str = "report") -> Unit:
    """The administrative unit to analyse, checked against the principal's
    ``analysis.read`` grants: 403 when the role never may, 404 (audited) when the unit
    is unknown, a department, or outside the jurisdiction."""
    guard.check_action(session, principal, ACTION, object_type=object_type)
    unit = units.get(session, unit_code) if unit_code else None
    if unit is None or unit.kind == "department":
        raise NotFound("unit not found", code="not_found", field="unit", params={"what": "unit"})
    guard.check_scope(session, principal, ACTION, unit.path, object_type=object_type, object_id=unit.code)
    return unit
