"""Schema management: Alembic migrations run programmatically (``shiyu db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from shiyu.kit.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


def upgrade(db: Database, revision: str = "head", *, seed: bool = True) -> tuple[int, int, int]:
    """Migrate the schema, then seed the editable catalogues (taxonomy, deadlines,
    holidays) where they are missing. Returns what was seeded."""
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    if not seed or revision != "head":
        return (0, 0, 0)
    from shiyu.domains.items.config import seed_catalogues

    with db.unit_of_work() as session:
        return seed_catalogues(session)


def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def create_database(server_url: str | URL, name: str) -> str:
    """Create an empty PostgreSQL database ``name`` (dropping one of that name first) on
    the server ``server_url`` points at; return the new database's URL. For tests and
    benchmarks, which each want a database of their own."""
    url = make_url(server_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str | URL, name: str) -> None:
    """Drop the PostgreSQL database ``name`` on the server ``server_url`` points at."""
    admin = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
