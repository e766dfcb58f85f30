"""Scheduled analysis 定时研判: early warnings are judged every hour for every city,
district and township, and each new warning becomes a work item for the responsible
centre (``service.raise_warnings``, idempotent per warning and day)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.analysis.service import raise_warnings
from shiyu.domains.analysis.warnings import all_warnings
from shiyu.kit.db import Database, after_unit
from shiyu.kit.timeutil import utcnow
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit

PRINCIPAL = Principal.system("early-warning")
#: Units whose children are judged: the city (its districts), districts (their townships)
#: and townships (their villages).
LEVELS = (1, 2, 3)


def warnings_tick(session: Session, as_of: datetime | None = None) -> int:
    """Raise the current warnings under every unit at ``LEVELS``; returns how many new
    work items were made (in ``session``)."""
    at = as_of or utcnow()
    made = 0
    for code in _units(session):
        made += sum(new for _w, _item, new in raise_warnings(session, PRINCIPAL, unit_code=code, as_of=at))
    return made


def _units(session: Session) -> list[str]:
    return list(session.execute(select(Unit.code).where(Unit.kind != "department", Unit.level.in_(LEVELS))
                                .order_by(Unit.path)).scalars())


def scheduled_tick(session: Session) -> None:
    """The scheduler's form: judge in the read-only ``session``, then raise the warnings of
    each unit that has any in a short write unit of its own (SQLite's one write lock is held
    for a unit's whole length)."""
    at = utcnow()
    warned = [code for code in _units(session) if all_warnings(session, PRINCIPAL, unit_code=code, as_of=at)]

    def raise_each(db: Database) -> None:
        for code in warned:
            with db.unit_of_work() as s:
                raise_warnings(s, PRINCIPAL, unit_code=code, as_of=at)

    if warned:
        after_unit(session, raise_each)


def register(scheduler: Any, settings: Any) -> None:
    scheduler.add("analysis.warnings", 3600, scheduled_tick, write=False)
