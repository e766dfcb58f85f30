"""The web application: API routers, error handlers, middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from shiyu import __version__
from shiyu.config import Settings, get_settings
from shiyu.domains.geo.api import router as geo_router
from shiyu.domains.items.admin_api import router as catalogue_router
from shiyu.domains.items.api import router as items_router
from shiyu.kit.db import Database, get_database
from shiyu.kit.pii import install_log_scrubbing
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
            from shiyu.domains.items.tasks import register as register_item_jobs
            from shiyu.platform.jobs.scheduler import Scheduler

            scheduler = Scheduler(database)
            register_item_jobs(scheduler, settings)
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
    app.include_router(audit_router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        with app.state.db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return (
            "<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>市域社会治理 Shiyu</title>"
            "<body><h1>市域社会治理平台 Shiyu</h1><p>API 文档：<a href='/docs'>/docs</a>，"
            "OpenAPI：<a href='/openapi.json'>/openapi.json</a></p></body></html>"
        )

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app
