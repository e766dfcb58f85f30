"""HTTP adapter of the analysis report 分析报告 and the analysis reads (hot spots, early
warnings) the UI draws from. Every read is scoped by ``analysis.read``."""

from __future__ import annotations

from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as FastPath
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from sqlalchemy import select

from shiyu.config import get_settings
from shiyu.domains.analysis import hotspots as hs
from shiyu.domains.analysis import warnings as ew
from shiyu.domains.analysis.access import ACTION, resolve_unit
from shiyu.domains.reports import service, tasks
from shiyu.kit.errors import Invalid, NotFound
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.scope import scope
from shiyu.platform.units.models import Unit
from shiyu.platform.web.deps import PrincipalDep, SessionDep
from shiyu.platform.workflow.calendar import LOCAL_TZ

router = APIRouter(prefix="/api/v1/analysis", tags=["analysis"])

UnitQ = Annotated[str, Query(min_length=1, max_length=32, description="unit code 单位代码")]
PeriodQ = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="month YYYY-MM (Beijing time)",
                               examples=["2026-10"])]
Permutations = Annotated[int, Query(ge=99, le=9999, description="conditional permutations of Gi*")]
Audience = Literal["police", "government", "committee"]


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/report", summary="The periodic analysis report 一分析三报告 (JSON, HTML, PDF or Excel)",
            response_model=None, responses={200: {"description": "the report in the asked format", "content": {
                "application/json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}}}}})
def get_report(session: SessionDep, principal: PrincipalDep, unit: UnitQ, period: PeriodQ,
               format: Annotated[Literal["json", "html", "pdf", "xlsx"], Query()] = "json",
               audience: Annotated[Audience, Query(description="addressee of the HTML/PDF version")] = "government",
               permutations: Permutations = 999) -> Response:
    report = service.build_report(session, principal, unit_code=unit, period=period, permutations=permutations)
    audit.record_detached(session, principal, "analysis.report", object_type="report", object_id=unit,
                          result="ok", detail={"period": period, "format": format, "audience": audience})
    name = f"report-{unit}-{period}"
    if format == "json":
        return JSONResponse(report)
    if format == "xlsx":
        return Response(service.to_xlsx(report), headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
                        media_type=XLSX)
    from shiyu.domains.reports import render

    shapes = service.grid_shapes(session, principal, report)
    if format == "html":
        return HTMLResponse(render.render_html(report, audience=audience, shapes=shapes))
    pdf = render.render_pdf(report, audience=audience, shapes=shapes)
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}-{audience}.pdf"'})


@router.get("/hotspots", summary="Getis-Ord Gi* hot spots of work items per unified grid")
def get_hotspots(session: SessionDep, principal: PrincipalDep, unit: UnitQ, period: PeriodQ,
                 category: Annotated[str | None, Query(max_length=32)] = None,
                 permutations: Permutations = 999,
                 seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 12345) -> dict[str, Any]:
    u = resolve_unit(session, principal, unit, object_type="hotspots")
    results = hs.grid_hotspots(session, principal, unit_code=u.code, period=period, category=category,
                               permutations=permutations, seed=seed)
    return {"method": "getis-ord-gi*", "weights": "queen, binary", "permutations": permutations, "seed": seed,
            "alpha": 0.05, "unit": u.code, "period": period, "features": [r.as_dict() for r in results]}


@router.get("/warnings", summary="Early warnings 预警 for a unit's children as of a day")
def get_warnings(session: SessionDep, principal: PrincipalDep, unit: UnitQ,
                 as_of: Annotated[date | None, Query(description="the day judged (Beijing time); today if absent")]
                 = None) -> dict[str, Any]:
    u = resolve_unit(session, principal, unit, object_type="warnings")
    at = warning_moment(as_of)
    found = ew.all_warnings(session, principal, unit_code=u.code, as_of=at)
    return {"unit": u.code, "as_of": at.isoformat(), "action": ACTION,
            "warnings": [service.warning_dict(w) for w in found]}


def warning_moment(day: date | None) -> datetime:
    """The end of ``day`` in Beijing time (or now, for today or no day); a future day is
    refused."""
    now = utcnow()
    if day is None:
        return now
    today = now.astimezone(LOCAL_TZ).date()
    if day > today:
        raise Invalid("as_of must not be in the future", code="as_of_in_future", field="as_of")
    if day.year < 2000:  # the detectors look back a year of weeks; earlier has no data and overflows
        raise Invalid("as_of must be in 2000 or later", code="invalid", field="as_of")
    if day == today:
        return now
    return datetime.combine(day, time.max, tzinfo=LOCAL_TZ)


def archive_root() -> Path:
    return tasks.archive_root(Path(get_settings().var_dir))


@router.get("/reports", summary="Archived monthly reports 月度报告 of a unit and the units below it")
def list_archived(session: SessionDep, principal: PrincipalDep, unit: UnitQ) -> dict[str, Any]:
    u = resolve_unit(session, principal, unit, object_type="report")
    stmt = select(Unit.code, Unit.path).where(Unit.kind != "department", Unit.path.startswith(u.path, autoescape=True))
    paths = dict(session.execute(scope(stmt, principal, ACTION, Unit.path)).tuples().all())
    return {"unit": u.code, "reports": tasks.archived(archive_root(), paths)}


@router.get("/reports/{period}/{unit_code}", summary="One archived monthly report as PDF (three versions)",
            response_class=FileResponse, responses={200: {"description": "the archived PDF", "content": {
                "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def get_archived(period: Annotated[str, FastPath(pattern=r"^\d{4}-\d{2}$")],
                 unit_code: Annotated[str, FastPath(min_length=1, max_length=32)],
                 session: SessionDep, principal: PrincipalDep) -> FileResponse:
    u = resolve_unit(session, principal, unit_code, object_type="report")
    pdf = tasks.archived_pdf(archive_root(), period, u.code)
    if not pdf.exists():
        raise NotFound("no archived report for that month", code="not_found", params={"what": "report"})
    audit.record_detached(session, principal, "analysis.report", object_type="report", object_id=u.code,
                          result="ok", detail={"period": period, "format": "pdf", "archived": True})
    return FileResponse(pdf, media_type="application/pdf", filename=f"report-{u.code}-{period}.pdf")
