"""The web application: API routers, error handlers, middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shiyu import __version__
from shiyu.config import Settings, get_settings
from shiyu.domains.geo.api import router as geo_router
from shiyu.domains.items.admin_api import router as catalogue_router
from shiyu.domains.items.admin_pages import router as items_admin_pages
from shiyu.domains.items.api import router as items_router
from shiyu.domains.items.edge import IntakeEdge
from shiyu.domains.items.pages import router as items_pages
from shiyu.domains.open311.api import router as open311_router
from shiyu.domains.open311.pages import router as open311_pages
from shiyu.domains.reports.api import router as analysis_router
from shiyu.domains.reports.pages import router as analysis_pages
from shiyu.kit.db import Database, get_database
from shiyu.kit.errors import DomainError
from shiyu.kit.pii import install_log_scrubbing
from shiyu.platform.ui import admin_pages as ui_admin_pages
from shiyu.platform.ui import pages as ui_pages
from shiyu.platform.ui.web import STATIC_DIR, LoginRequired
from shiyu.platform.web import problems
from shiyu.platform.web.audit_api import router as audit_router
from shiyu.platform.web.auth_api import router as auth_router
from shiyu.platform.web.middleware import BodyLimitMiddleware, RequestIdMiddleware


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    install_log_scrubbing()
    database = db or get_database(settings.resolved_database_url())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if settings.scheduler and db is None:
            from shiyu.domains.analysis.tasks import register as register_warning_jobs
            from shiyu.domains.items.tasks import register as register_item_jobs
            from shiyu.domains.reports.tasks import register as register_report_jobs
            from shiyu.platform.jobs.scheduler import Scheduler

            scheduler = Scheduler(database)
            register_item_jobs(scheduler, settings)
            register_report_jobs(scheduler, settings)
            register_warning_jobs(scheduler, settings)
            scheduler.start()
        yield
        if scheduler is not None:
            scheduler.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Shiyu 市域 API",
        version=__version__,
        description="Municipal social governance 市域社会治理: units, grids, work items, analysis.",
    )
    app.state.settings = settings
    app.state.db = database
    problems.install(app)
    app.include_router(auth_router)
    app.include_router(geo_router)
    app.include_router(items_router)
    app.include_router(catalogue_router)
    app.include_router(analysis_router)
    app.include_router(audit_router)
    app.include_router(open311_router)

    @app.get("/healthz", tags=["ops"], summary="Readiness: the server answers and the database too")
    def healthz() -> dict[str, str]:
        with app.state.db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__}

    @app.get("/livez", tags=["ops"], summary="Liveness: the server answers (no database)")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(ui_pages.router)
    app.include_router(items_pages)
    app.include_router(analysis_pages)
    app.include_router(ui_admin_pages.router)
    app.include_router(items_admin_pages)
    app.include_router(open311_pages)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    install_ui_errors(app)

    app.add_middleware(IntakeEdge)  # innermost: inside the request id and the body limit
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def _is_page(request: Request) -> bool:
    p = request.url.path
    return not (p.startswith("/api/") or p.startswith("/open311/") or p in ("/openapi.json", "/healthz", "/livez"))


def install_ui_errors(app: FastAPI) -> None:
    """Pages get HTML (or a redirect to the login page); the API keeps Problem Details."""
    from shiyu.platform.ui.web import render
    from shiyu.platform.web.messages import detail_with, title

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        target = "/login?next=" + quote(exc.next_url)
        if request.headers.get("HX-Request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if not _is_page(request):
            return problems.domain_problem(request, exc)
        loc = "en" if request.cookies.get("shiyu_lang", "").startswith("en") else "zh-CN"
        return render(request, "error.html", title=title(exc.status, loc),
                      detail=detail_with(exc.code, loc, exc.params, "") or title(exc.status, loc), status=exc.status)
