"""Database plumbing: declarative base, engine factory, sessions.

Durability settings are explicit here:
- SQLite: WAL journal, ``synchronous=FULL``, foreign keys on, a busy timeout; write
  transactions start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a
  lock upgrade, read transactions with a plain deferred ``BEGIN``.
- PostgreSQL: ``synchronous_commit`` on (the server default, asserted per connection).

The transaction belongs to the edge (a request, a CLI command or a job): services
``flush()`` but never ``commit()``. ``unit_of_work`` is that edge for CLI and jobs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, Table, create_engine, event, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from shiyu.kit.timeutil import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver; we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Materialised-path prefixes (LIKE 'a/b/%') can then use the BINARY indexes; text
        # search that wants case-insensitivity lowers both sides explicitly.
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _install_postgres_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET synchronous_commit TO on")
            cur.execute("SET TIME ZONE 'UTC'")
        dbapi_conn.commit()


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A statement's parameters stay out of SQLAlchemy's error messages, which reach the
    # logs with tracebacks: they can hold a resident ID, a phone or an address.
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        _install_sqlite_hooks(engine)
    else:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(url, **kwargs)
        _install_postgres_hooks(engine)
    return engine


_AFTER_UNIT = "after_unit"


def after_unit(session: Session, fn: Callable[[Database], None]) -> None:
    """Run ``fn(database)`` once the unit of work of ``session`` has ended, whether it
    committed or rolled back (e.g. to keep an audited denial the rollback would lose)."""
    session.info.setdefault(_AFTER_UNIT, []).append(fn)


class Database:
    """One engine and its two session factories (read and write)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sqlite = is_sqlite(url)
        write_engine = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.sqlite else self.engine
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_engine, expire_on_commit=False)

    def session(self, *, write: bool = True) -> Session:
        return (self._write if write else self._read)()

    @contextlib.contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """Open a session, commit once at the end, roll back on any error; then run what
        was registered with ``after_unit`` (committed or not)."""
        session = self.session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            self.close_unit(session)

    def close_unit(self, session: Session) -> None:
        """Close a unit of work's session and run its ``after_unit`` callbacks: the one
        ending shared by ``unit_of_work`` and the web request edge."""
        after = session.info.pop(_AFTER_UNIT, [])
        session.close()
        for fn in after:
            fn(self)

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}


def get_database(url: str | None = None) -> Database:
    """Process-wide Database for ``url`` (default: from settings)."""
    if url is None:
        from shiyu.config import get_settings

        url = get_settings().resolved_database_url()
    db = _databases.get(url)
    if db is None:
        db = _databases[url] = Database(url)
    return db


#: Process caches of things read from one database (spatial indexes, catalogues), keyed
#: by the engine's connection pool: not by URL and not by ``id()``, so a database dropped
#: and recreated under the same URL, or a new engine at a recycled address, never sees
#: another database's entries. Entries go away with the engine.
_per_database: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def per_database(session: Session) -> dict[str, Any]:
    """The cache dictionary of the database ``session`` is bound to."""
    pool = session.get_bind().engine.pool
    found = _per_database.get(pool)
    if found is None:
        found = _per_database.setdefault(pool, {})
    return found


def forget_everywhere(key: str) -> None:
    """Drop ``key`` from every database's cache (after a change an admin made)."""
    for entries in list(_per_database.values()):
        entries.pop(key, None)


# --------------------------------------------------------------------------- bulk rows

_COPY_PLANS: dict[tuple[Any, tuple[str, ...]], tuple[str, list[Callable[[Any], Any]]]] = {}
_ROW_PLANS: dict[tuple[Any, frozenset[str]], tuple[str, list[tuple[str, Any, bool, Any, bool]]]] = {}


def _same(v: Any) -> Any:
    return v


def _copy_plan(table: Table, keys: tuple[str, ...], dialect: Any) -> tuple[str, list[Callable[[Any], Any]]]:
    """The ``COPY`` of ``keys`` into ``table`` and, per column, what turns a Python value
    into what psycopg writes (the column type's bind processing, JSON as its text)."""
    found = _COPY_PLANS.get((table, keys))
    if found is not None:
        return found
    convert: list[Callable[[Any], Any]] = []
    for key in keys:
        type_ = table.c[key].type
        impl = type_.impl_instance if isinstance(type_, TypeDecorator) else type_
        if isinstance(impl, JSON):
            none_as_null = impl.none_as_null
            convert.append(lambda v, _nn=none_as_null: None if v is None and _nn else json.dumps(v))
        elif isinstance(type_, TypeDecorator):
            convert.append(lambda v, _t=type_: _t.process_bind_param(v, dialect))
        else:
            convert.append(_same)
    sql = f"COPY {table.name} ({', '.join(table.c[k].name for k in keys)}) FROM STDIN"
    found = _COPY_PLANS[(table, keys)] = (sql, convert)
    return found


def insert_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts of column keys) into ``table`` as part of ``session``'s
    transaction; a column a row leaves out takes its Python default as with Core
    ``insert``, or NULL (or its server default when every row leaves it out).

    On PostgreSQL the rows go in with ``COPY`` (psycopg formats each row in C, and
    PostgreSQL takes the lot as one command), which costs a batch of new items a fraction
    of an executemany: that pipelines one execution per row and converts every row's
    parameters in Python. Elsewhere it is a Core executemany. Constraints and triggers
    hold as for INSERT; ids must be given or come from the column's server default."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    given = frozenset().union(*rows)
    plan = _ROW_PLANS.get((table, given))
    if plan is None:
        keys = tuple(c.key for c in table.columns
                     if c.key in given or (c.default is not None and not c.primary_key))
        sql, convert = _copy_plan(table, keys, session.get_bind().dialect)
        steps = []
        for key, fn in zip(keys, convert, strict=True):
            default = table.c[key].default
            steps.append((key, None if fn is _same else fn, key in given,
                          None if default is None else default.arg,  # type: ignore[attr-defined]
                          bool(getattr(default, "is_callable", False))))
        plan = _ROW_PLANS[(table, given)] = (sql, steps)
    sql, steps = plan
    driver = session.connection().connection.driver_connection
    assert driver is not None
    dbapi = session.get_bind().dialect.loaded_dbapi
    try:
        with driver.cursor() as cur, cur.copy(sql) as copy:
            for r in rows:
                values = []
                for key, fn, in_rows, default, call in steps:
                    if in_rows and key in r:
                        v = r[key]
                    elif default is None:
                        v = None
                    else:
                        v = default(None) if call else default
                    values.append(v if fn is None else fn(v))
                copy.write_row(values)
    except dbapi.Error as e:  # as SQLAlchemy raises it for its own statements (IntegrityError, ...)
        raise DBAPIError.instance(sql, None, e, dbapi.Error) from e


# --------------------------------------------------------------------------- hot statements

_DRIVER_SQL: dict[tuple[Any, str], tuple[str, dict[str, Any], frozenset[str]]] = {}


@functools.cache
def _namedtuple_row() -> Any:
    """psycopg's named-tuple row factory, imported once and only where PostgreSQL is used."""
    from psycopg.rows import namedtuple_row
    return namedtuple_row


def fetch(session: Session, stmt: Any, params: dict[str, Any] | None = None) -> list[Any]:
    """The rows of a Core or ``text()`` statement in ``session``'s transaction, as named
    tuples (``row.column``), with no result-type processing (a ``UTCDateTime`` column
    comes back as the driver gives it: use ``as_utc``); a statement without rows gives [].

    On PostgreSQL the statement is compiled once and run on the session's psycopg
    connection, which prepares it after a few runs: SQLAlchemy's own execution costs
    about three times the driver's CPU per statement, and a batch of new items runs a
    handful of them per transaction. Parameters go to psycopg as given (no bind
    processing: pass plain values, aware datetimes), and column defaults and ``onupdate``
    values are not applied: a statement that needs one is refused on every database.
    Elsewhere it is ``session.execute``. Pending ORM changes are flushed first, as
    ``session.execute`` would (autoflush); a driver error is raised as SQLAlchemy raises
    it for its own statements. Pass statements built once (module constants): each one is
    compiled and kept for the life of the process."""
    bind = session.get_bind()
    params = params or {}
    found = _DRIVER_SQL.get((stmt, bind.dialect.name))
    if found is None:
        compiled = stmt.compile(dialect=bind.dialect)
        # Values bound in the statement itself (``Model.id == 1``) are parameters too.
        found = _DRIVER_SQL[(stmt, bind.dialect.name)] = (
            str(compiled), {k: v for k, v in compiled.params.items() if v is not None},
            frozenset(k for k, v in compiled.params.items() if v is None))
    sql, bound, required = found
    missing = required.difference(params)
    if missing:
        raise ValueError(f"fetch: no value for {sorted(missing)} (column defaults are not applied)")
    if bind.dialect.name != "postgresql":
        result = session.execute(stmt, params)
        return list(result) if getattr(result, "returns_rows", True) else []
    params = {**bound, **params}
    if session.autoflush:
        session.flush()
    driver = session.connection().connection.driver_connection
    assert driver is not None
    dbapi = bind.dialect.loaded_dbapi
    try:
        with driver.cursor(row_factory=_namedtuple_row()) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
    except dbapi.Error as e:
        raise DBAPIError.instance(sql, params, e, dbapi.Error, hide_parameters=True) from e
