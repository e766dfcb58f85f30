"""Analysis page 分析研判 of the web workbench: pick a unit and a month, read the report
(the three addressed versions), download it as PDF, Excel or JSON, and see the current
early warnings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from shiyu.domains.analysis import warnings as ew
from shiyu.domains.analysis.access import ACTION, resolve_unit
from shiyu.domains.reports import tasks
from shiyu.domains.reports.api import archive_root
from shiyu.kit.errors import DomainError
from shiyu.kit.timeutil import utcnow
from shiyu.platform.authz.scope import scope
from shiyu.platform.ui.web import LOCAL_TZ, UiPrincipal, register_templates, render, t
from shiyu.platform.units.models import Unit
from shiyu.platform.web.deps import SessionDep

router = APIRouter(include_in_schema=False)
register_templates(Path(__file__).parent / "templates")

AUDIENCES = ("government", "police", "committee")


def last_month() -> str:
    first = utcnow().astimezone(LOCAL_TZ).date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def _units(session: Any, principal: Any) -> list[Unit]:
    """Administrative units down to townships the principal may analyse, tree order."""
    stmt = select(Unit).where(Unit.kind != "department", Unit.level <= 3).order_by(Unit.path)
    return list(session.execute(scope(stmt, principal, ACTION, Unit.path)).scalars())


@router.get("/analysis")
def analysis_page(request: Request, session: SessionDep, principal: UiPrincipal,
                  unit: Annotated[str | None, Query(max_length=32)] = None,
                  period: Annotated[str | None, Query(max_length=7)] = None,
                  audience: Annotated[str, Query(max_length=16)] = "government") -> Response:
    options = _units(session, principal)
    unit = unit or (options[0].code if options else (principal.unit_code or ""))
    period = period or last_month()
    audience = audience if audience in AUDIENCES else "government"
    error = None
    found: list[Any] = []
    monthly: list[dict[str, Any]] = []
    chosen = None
    try:
        chosen = resolve_unit(session, principal, unit, object_type="report")
        found = ew.all_warnings(session, principal, unit_code=chosen.code, as_of=utcnow())
        monthly = tasks.archived(archive_root(), {chosen.code: chosen.path})
    except DomainError as exc:
        error = t(request, "This unit is not in your jurisdiction.") if exc.status in (403, 404) else exc.detail
    query = {"unit": unit, "period": period}
    return render(request, "reports/page.html", principal=principal, units=options, unit=unit, period=period,
                  audience=audience, audiences=AUDIENCES, error=error, chosen=chosen, warnings=found, monthly=monthly,
                  html_url="/api/v1/analysis/report?" + urlencode({**query, "format": "html", "audience": audience}),
                  pdf_url="/api/v1/analysis/report?" + urlencode({**query, "format": "pdf", "audience": audience}),
                  xlsx_url="/api/v1/analysis/report?" + urlencode({**query, "format": "xlsx"}),
                  json_url="/api/v1/analysis/report?" + urlencode({**query, "format": "json"}))
