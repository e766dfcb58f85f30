"""Database plumbing: durability settings, migrations matching the models, unit tree paths."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from shiyu.all_models import metadata
from shiyu.platform.units import service as units
from shiyu.platform.units.models import Unit
from shiyu.platform.units.rules import admin_kind_of, check_unit_code


def test_durability_settings(db: Any) -> None:
    with db.engine.connect() as conn:
        if db.sqlite:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        else:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_foreign_keys_enforced(empty_db: Any) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), empty_db.unit_of_work() as s:
        s.add(Unit(code="320102000000", name="x", kind="district", level=2, parent_code="399900000000",
                   path="/399900000000/320102000000/"))
        s.flush()


def test_migrations_match_models(db: Any) -> None:
    with db.engine.connect() as conn:
        def on_this_database(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
            # An index the models create only on some databases (Index.ddl_if).
            only = getattr(obj, "_ddl_if", None)
            return not (type_ == "index" and only is not None and only.dialect not in (None, conn.dialect.name))

        diff = compare_metadata(MigrationContext.configure(
            conn, opts={"compare_type": False, "include_object": on_this_database}), metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_descendants_by_path(db: Any) -> None:
    with db.unit_of_work(write=False) as s:
        district = units.get(s, "320102000000")
        assert district is not None
        below = s.execute(select(Unit.code).where(Unit.path.startswith(district.path), Unit.code != district.code)
                          ).scalars().all()
        assert below and all(c.startswith("320102") for c in below)
        assert units.descendant_count(s, district) == len(below)
        village = s.execute(select(Unit).where(Unit.kind == "village", Unit.path.startswith(district.path))
                            ).scalars().first()
        assert units.chain_codes(village)[-1] == "320100000000"
        assert len(units.chain_codes(village)) == 4


def test_code_rules() -> None:
    assert admin_kind_of("320100000000") == "city"
    assert admin_kind_of("320102000000") == "district"
    assert admin_kind_of("320102001000") == "town"
    assert admin_kind_of("320102001201") == "village"
    assert admin_kind_of("32010200100") is None
    assert check_unit_code("320102001000", "town", "320102000000", "district") is None
    assert check_unit_code("320103001000", "town", "320102000000", "district") is not None  # wrong prefix
    assert check_unit_code("320102001000", "village", "320102000000", "district") is not None  # wrong level
    assert check_unit_code("320102000000-GA", "department", "320102000000", "district") is None
    assert check_unit_code("320102000000-GA", "department", "320103000000", "district") is not None


def test_fetch_runs_statements_as_session_execute_would(db: Any) -> None:
    """``kit.db.fetch``, the driver-level path of the intake batch's statements on
    PostgreSQL: named rows, values bound in the statement, autoflush, writes, and driver
    errors raised as SQLAlchemy's."""
    import pytest
    from sqlalchemy import bindparam, text, update
    from sqlalchemy.exc import IntegrityError

    from shiyu.kit.db import fetch

    stmt = select(Unit.code, Unit.path.label("unit_path")).where(Unit.code == "320102000000")
    with db.unit_of_work() as s:
        rows = fetch(s, stmt)
        assert [(r.code, r.unit_path) for r in rows] == [(c, p) for c, p in s.execute(stmt)]
        # Pending ORM changes are flushed first, and a write returns no rows.
        s.add(Unit(code="320102099000", name="fetch test", kind="town", level=3, parent_code="320102000000",
                   path="/320100000000/320102000000/320102099000/"))
        assert [r.code for r in fetch(s, select(Unit.code).where(Unit.code == bindparam("c")),
                                      {"c": "320102099000"})] == ["320102099000"]
        assert fetch(s, text("UPDATE units SET name = :n WHERE code = :c"), {"n": "renamed", "c": "320102099000"}) == []
        # A statement that needs a column's onupdate value (units.updated_at) is refused
        # on every database, not only where the driver would miss it.
        with pytest.raises(ValueError, match="updated_at"):
            fetch(s, update(Unit).where(Unit.code == "320102099000").values(name=bindparam("n")), {"n": "x"})
        assert fetch(s, text("SELECT name FROM units WHERE code = :c"), {"c": "320102099000"})[0].name == "renamed"
        s.rollback()
    with pytest.raises(IntegrityError), db.unit_of_work() as s:
        fetch(s, text("INSERT INTO units (code, name, kind, level, parent_code, path) "
                      "VALUES ('320102098000', 'x', 'town', 3, '399900000000', '/x/')"))


def test_database_errors_do_not_carry_statement_parameters(db: Any) -> None:
    """SQLAlchemy's error text (logged with tracebacks) must not echo personal data bound
    to a failing statement, through the engine or through ``kit.db.fetch``."""
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from shiyu.kit.db import fetch

    resident_id = "110101199003077777"
    bad = text("SELECT * FROM no_such_table WHERE x = :p")
    with pytest.raises(DBAPIError) as via_engine, db.engine.connect() as conn:
        conn.execute(bad, {"p": resident_id})
    with pytest.raises(DBAPIError) as via_fetch, db.unit_of_work() as s:
        fetch(s, bad, {"p": resident_id})
    for exc in (via_engine.value, via_fetch.value):
        assert resident_id not in str(exc)
