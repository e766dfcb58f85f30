"""The monthly report run 月度报告: on the first days of each month the previous month's
analysis report is produced for the city, every district and every township, archived under
``<var>/reports/<YYYY-MM>/<unit>.pdf`` (all three addressed versions) with its JSON beside it,
and the unit's centre is told in its notifications.

The reports are built in a read-only unit of work (writing units on SQLite hold the one
write lock from their start); the notifications follow in one short write.

Idempotent and safe to run from several processes: a unit whose PDF already exists is
skipped, and files appear atomically (written to a temporary name, then renamed).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.items.models import Notification
from shiyu.domains.reports import service
from shiyu.kit.db import Database, after_unit
from shiyu.kit.errors import NotFound
from shiyu.kit.timeutil import utcnow
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit
from shiyu.platform.workflow.calendar import LOCAL_TZ

#: Levels reported on each month: city 市, district 区县, township 乡镇街道.
LEVELS = (1, 2, 3)
#: Marks a month whose run finished for every unit.
DONE = ".done"
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Archived:
    unit_code: str
    period: str
    pdf: Path
    created: bool


def archive_root(var_dir: Path) -> Path:
    return var_dir / "reports"


def archived_pdf(root: Path, period: str, unit_code: str) -> Path:
    if not _PERIOD.match(period) or not re.fullmatch(r"[0-9A-Za-z-]{1,32}", unit_code):
        raise NotFound("report not found", code="not_found", params={"what": "report"})
    return root / period / f"{unit_code}.pdf"


def previous_month(now: datetime | None = None) -> str:
    first = (now or utcnow()).astimezone(LOCAL_TZ).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def monthly_reports(session: Session, root: Path, *, period: str, levels: tuple[int, ...] = LEVELS,
                    permutations: int = 999, progress: Callable[[int, int], None] | None = None) -> list[Archived]:
    """Produce (or keep) the archived report of ``period`` for every unit at ``levels``."""
    from shiyu.domains.reports import render

    principal = Principal.system("monthly-reports")
    unit_rows = session.execute(select(Unit).where(Unit.kind != "department", Unit.level.in_(levels))
                                .order_by(Unit.path)).scalars().all()
    out: list[Archived] = []
    notes: list[Notification] = []
    # The reports are built in a read-only unit (minutes of work must not hold SQLite's write
    # lock); the notifications are written in one short unit once it ends.
    after_unit(session, lambda db: _notify(db, notes))
    folder = root / period
    folder.mkdir(parents=True, exist_ok=True)
    for i, unit in enumerate(unit_rows, 1):
        pdf_path = archived_pdf(root, period, unit.code)
        created = False
        if not pdf_path.exists():
            report = service.build_report(session, principal, unit_code=unit.code, period=period,
                                          permutations=permutations)
            shapes = service.grid_shapes(session, principal, report)
            _write(pdf_path.with_suffix(".json"), json.dumps(report, ensure_ascii=False).encode("utf-8"))
            _write(pdf_path, render.render_pdf_many(report, shapes=shapes))
            notes.append(Notification(unit_code=unit.code, scope_path=unit.path, item_id=None, kind="report",
                                      message=f"{unit.name}{period} 月度分析报告已生成（一分析三报告）"))
            created = True
        out.append(Archived(unit.code, period, pdf_path, created))
        if progress:
            progress(i, len(unit_rows))
    return out


def _notify(db: Database, notes: list[Notification]) -> None:
    if notes:
        with db.unit_of_work() as s:
            s.add_all(notes)


def archived(root: Path, unit_paths: dict[str, str]) -> list[dict[str, Any]]:
    """Archived reports of the given units (code -> path), newest month first."""
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    for folder in sorted((p for p in root.iterdir() if p.is_dir() and _PERIOD.match(p.name)), reverse=True):
        for code in unit_paths:
            pdf = folder / f"{code}.pdf"
            if pdf.exists():
                rows.append({"period": folder.name, "unit": code, "bytes": pdf.stat().st_size})
    return rows


def register(scheduler: Any, settings: Any) -> None:
    """Check hourly; the work happens once a month (each unit's file exists afterwards)."""
    root = archive_root(Path(settings.var_dir))

    def job(session: Session) -> None:
        period = previous_month()
        done = root / period / DONE
        if done.exists():
            return
        monthly_reports(session, root, period=period)
        done.touch()

    scheduler.add("reports.monthly", 3600, job, write=False)
