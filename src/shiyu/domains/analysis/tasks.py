"""Scheduled analysis 定时研判: early warnings are judged every hour for every city,
district and township, and each new warning becomes a work item for the responsible
centre (``service.raise_warnings``, idempotent per warning and day)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.analysis.service import raise_warnings
from shiyu.kit.timeutil import utcnow
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit

#: Units whose children are judged: the city (its districts), districts (their townships)
#: and townships (their villages).
LEVELS = (1, 2, 3)


def warnings_tick(session: Session, as_of: datetime | None = None) -> int:
    """Raise the current warnings under every unit at ``LEVELS``; returns how many new
    work items were made."""
    at = as_of or utcnow()
    principal = Principal.system("early-warning")
    codes = session.execute(select(Unit.code).where(Unit.kind != "department", Unit.level.in_(LEVELS))
                            .order_by(Unit.path)).scalars().all()
    made = 0
    for code in codes:
        made += sum(new for _w, _item, new in raise_warnings(session, principal, unit_code=code, as_of=at))
    return made


def register(scheduler: Any, settings: Any) -> None:
    scheduler.add("analysis.warnings", 3600, lambda session: warnings_tick(session))
