"""Deadline configuration 时限配置 and the working-day calendar, read from the database
(seeded from ``seed/``) and cached briefly per database."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.items.models import Category, Holiday, SlaRule
from shiyu.kit.db import forget_everywhere, per_database
from shiyu.platform.workflow.calendar import Duration, WorkCalendar

_TTL = 10.0
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
_CACHE_KEY = "items.config"


def invalidate() -> None:
    forget_everywhere(_CACHE_KEY)


def _cached(session: Session, name: str, build: Any) -> Any:
    cache: dict[str, tuple[float, Any]] = per_database(session).setdefault(_CACHE_KEY, {})
    hit = cache.get(name)
    now = time.monotonic()
    if hit and now - hit[0] < _TTL:
        return hit[1]
    value = build()
    cache[name] = (now, value)
    return value


@dataclass(frozen=True)
class SlaTable:
    rules: dict[tuple[str, str | None, str | None, str], Duration]

    def duration(self, kind: str, category: str | None, priority: str | None, step: str) -> Duration | None:
        """Most specific rule wins: category (or its ancestors) + priority, category, priority, default."""
        cats: list[str | None] = []
        c = category
        while c:
            cats.append(c)
            c = c.rsplit("-", 1)[0] if c.count("-") > 1 else None
        cats.append(None)
        for cat in cats:
            for pri in (priority, None):
                d = self.rules.get((kind, cat, pri, step))
                if d is not None:
                    return d
        return None


def sla_table(session: Session) -> SlaTable:
    def build() -> SlaTable:
        rows = session.execute(select(SlaRule)).scalars().all()
        return SlaTable({(r.kind, r.category, r.priority, r.step): Duration.parse(r.duration) for r in rows})

    return _cached(session, "sla", build)  # type: ignore[no-any-return]


def calendar(session: Session) -> WorkCalendar:
    def build() -> WorkCalendar:
        rows = session.execute(select(Holiday)).scalars().all()
        if not rows:
            return WorkCalendar.default()
        return WorkCalendar(holidays=[r.day for r in rows if not r.is_workday],
                            workdays=[r.day for r in rows if r.is_workday])

    return _cached(session, "calendar", build)  # type: ignore[no-any-return]


def categories(session: Session) -> dict[str, Category]:
    def build() -> dict[str, Category]:
        rows = session.execute(select(Category)).scalars().all()
        for r in rows:
            session.expunge(r)
        return {r.code: r for r in rows}

    return _cached(session, "categories", build)  # type: ignore[no-any-return]


def deadline(session: Session, start: datetime, kind: str, category: str | None, priority: str | None,
             step: str) -> datetime | None:
    d = sla_table(session).duration(kind, category, priority, step)
    if d is None:
        return None
    return calendar(session).add(start, d)


def _seed_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("shiyu.domains.items.seed").joinpath(name).read_text("utf-8"))
    return data


def seed_catalogues(session: Session) -> tuple[int, int, int]:
    """Load the seed taxonomy, deadlines and holidays where missing (idempotent)."""
    have = set(session.execute(select(Category.code)).scalars())
    cats = sorted(_seed_json("taxonomy.json")["categories"], key=lambda c: c["code"].count("-"))
    n_cat = 0
    for c in cats:
        if c["code"] in have:
            continue
        session.add(Category(code=c["code"], name=c["name"], name_en=c.get("name_en") or "", kind=c["kind"],
                             parent_code=c.get("parent"), public=bool(c.get("public")), domain=c.get("domain"),
                             department=c.get("department")))
        n_cat += 1
        if n_cat % 200 == 0:
            session.flush()
    session.flush()
    have_rules = {(r.kind, r.category, r.priority, r.step) for r in session.execute(select(SlaRule)).scalars()}
    n_rule = 0
    for r in _seed_json("sla.json")["rules"]:
        key = (r["kind"], r.get("category"), r.get("priority"), r["step"])
        if key not in have_rules:
            Duration.parse(r["duration"])
            session.add(SlaRule(kind=key[0], category=key[1], priority=key[2], step=key[3], duration=r["duration"]))
            have_rules.add(key)
            n_rule += 1
    n_hol = 0
    if session.execute(select(Holiday.day).limit(1)).first() is None:
        cal = WorkCalendar.default().to_json()
        for d in cal.get("holidays", []):
            session.add(Holiday(day=datetime.fromisoformat(d).date(), is_workday=False))
            n_hol += 1
        for d in cal.get("workdays", []):
            session.add(Holiday(day=datetime.fromisoformat(d).date(), is_workday=True))
            n_hol += 1
    session.flush()
    invalidate()
    return n_cat, n_rule, n_hol
