"""Analytics layer 分析层 on DuckDB: the figures of "一分析三报告" per unit and period.

The operational database (SQLite or PostgreSQL) stays the system of record; analysis
reads it, never writes it. Two sources feed the same DuckDB views, so every query below
is written once:

* ``Olap.from_database``: the rows the principal may read, inside the unit's subtree and
  the asked time windows, are fetched through SQLAlchemy (the one ``scope`` filter) into
  Arrow tables registered in an in-memory DuckDB. Right for a report on live data.
* ``Olap.from_parquet``: Parquet snapshots written by ``export_parquet`` (``shiyu analysis
  snapshot``) are read by DuckDB directly, with the same jurisdiction restriction applied
  as a view. Right for large histories (tens of millions of calls 警情).

Snapshots carry analysis columns only, never personal data (no names, phones, IDs,
addresses or free text).

Views (times are naive UTC):

* ``items(id, kind, status, category_code, source, scope_path, grid_code, created_at,
  closed_at, handle_due_at, rating, repeat_of)``: work items, merged duplicates excluded;
* ``calls(stream, category, category_name, is_police, scope_path, grid_code, occurred_at)``:
  imported police calls 警情 and cases 案情.

Definitions (each also written as plain SQL in ``tests/test_report_figures.py``):

* streams 四情: ``call`` 警情 and ``case`` 案情 from ``calls``; ``opinion`` 舆情 = hotline
  items (citizens' own requests 群众诉求); ``social`` 社情 = events, disputes, petitions;
* counted in a window when created (items) or occurred (calls) in ``[start, end)``;
* closure rate 办结率: items created in the window, not rejected, that are closed or rated
  with ``closed_at`` before the window's end;
* on-time rate 按期办结率: items closed in the window (closed or rated) with no handling
  deadline or closed by it;
* satisfaction 满意度: mean rating (1..5) of items closed in the window; satisfied rate
  满意率: share of those ratings that are 4 or 5;
* repeat-petition rate 重复信访率: petitions created in the window marked as a repeat;
* dispute-resolution rate 矛盾纠纷化解率: disputes created in the window, not rejected,
  closed or rated by the window's end;
* overdue 超期 at a moment ``t``: items created before ``t``, not closed by ``t``, with a
  handling deadline before ``t``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from shiyu.domains.analysis.access import ACTION
from shiyu.domains.analysis.models import PoliceRecord
from shiyu.domains.items.models import WorkItem
from shiyu.platform.authz.principal import Principal
from shiyu.platform.authz.scope import scope

#: Path segment length: a 12-digit code and its slash.
SEGMENT = 13
CLOSED = ("closed", "rated")
STREAMS = ("call", "case", "opinion", "social")
KINDS = ("event", "dispute", "petition", "hotline")

ITEM_SCHEMA = pa.schema([
    ("id", pa.int64()), ("kind", pa.string()), ("status", pa.string()), ("category_code", pa.string()),
    ("source", pa.string()), ("scope_path", pa.string()), ("grid_code", pa.string()),
    ("created_at", pa.timestamp("us")), ("closed_at", pa.timestamp("us")), ("handle_due_at", pa.timestamp("us")),
    ("rating", pa.int32()), ("repeat_of", pa.int64()),
])
CALL_SCHEMA = pa.schema([
    ("stream", pa.string()), ("category", pa.string()), ("category_name", pa.string()), ("is_police", pa.bool_()),
    ("scope_path", pa.string()), ("grid_code", pa.string()), ("occurred_at", pa.timestamp("us")),
    ("lon", pa.float64()), ("lat", pa.float64()),
])
_DUCK_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "bool": "BOOLEAN",
               "timestamp[us]": "TIMESTAMP", "double": "DOUBLE"}
ITEMS_FILE = "work_items.parquet"
CALLS_FILE = "police_records.parquet"


@dataclass(frozen=True)
class Window:
    """A named half-open time window ``[start, end)`` 统计期."""

    name: str
    start: datetime
    end: datetime

    @property
    def start_utc(self) -> datetime:
        return _naive_utc(self.start)

    @property
    def end_utc(self) -> datetime:
        return _naive_utc(self.end)


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _utc_or_none(t: datetime | None) -> datetime | None:
    return None if t is None else _naive_utc(t)


# --------------------------------------------------------------------------- sources

def _item_columns() -> list[Any]:
    return [WorkItem.id, WorkItem.kind, WorkItem.status, WorkItem.category_code, WorkItem.source,
            WorkItem.scope_path, WorkItem.grid_code, WorkItem.created_at, WorkItem.closed_at,
            WorkItem.handle_due_at, WorkItem.rating, WorkItem.repeat_of]


def _call_columns() -> list[Any]:
    return [PoliceRecord.stream, PoliceRecord.category, PoliceRecord.category_name, PoliceRecord.is_police,
            PoliceRecord.scope_path, PoliceRecord.grid_code, PoliceRecord.occurred_at, PoliceRecord.lon,
            PoliceRecord.lat]


def _to_arrow(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, values in zip(schema, cols, strict=True):
        if pa.types.is_timestamp(field.type):
            values = [_utc_or_none(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _fetch(session: Session, stmt: Any, schema: pa.Schema, batch: int = 50_000) -> pa.Table:
    result = session.execute(stmt.execution_options(yield_per=batch))
    tables = [_to_arrow(part, schema) for part in result.partitions(batch)]
    return pa.concat_tables(tables) if tables else _to_arrow([], schema)


class Olap:
    """An in-memory DuckDB holding the ``items`` and ``calls`` views for one analysis."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: str) -> None:
        self.con = con
        self.source = source
        self._lock = threading.Lock()
        self._call_counts_of: tuple[tuple[str, datetime, datetime], ...] | None = None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Olap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_database(cls, session: Session, principal: Principal, *, root_path: str,
                      windows: Iterable[Window], open_at: datetime | None = None) -> Olap:
        """Fetch what ``principal`` may read under ``root_path`` for ``windows``.

        Items are fetched when created or closed inside a window, or (with ``open_at``)
        still open at that moment so overdue counts are right; calls when they occurred
        inside a window.
        """
        wins = list(windows)
        created = [and_(WorkItem.created_at >= w.start, WorkItem.created_at < w.end) for w in wins]
        closed = [and_(WorkItem.closed_at >= w.start, WorkItem.closed_at < w.end) for w in wins]
        conds = created + closed
        if open_at is not None:
            conds.append(and_(WorkItem.created_at < open_at,
                              or_(WorkItem.closed_at.is_(None), WorkItem.closed_at >= open_at)))
        items_stmt = (select(*_item_columns())
                      .where(WorkItem.scope_path.startswith(root_path, autoescape=True),
                             WorkItem.status != "merged", or_(*conds)))
        items_stmt = scope(items_stmt, principal, ACTION, WorkItem.scope_path)
        calls_stmt = (select(*_call_columns())
                      .where(PoliceRecord.scope_path.startswith(root_path, autoescape=True),
                             or_(*[and_(PoliceRecord.occurred_at >= w.start, PoliceRecord.occurred_at < w.end)
                                   for w in wins])))
        calls_stmt = scope(calls_stmt, principal, ACTION, PoliceRecord.scope_path)
        items = _fetch(session, items_stmt, ITEM_SCHEMA)
        calls = _fetch(session, calls_stmt, CALL_SCHEMA)
        con = duckdb.connect()
        con.register("items_arrow", items)
        con.register("calls_arrow", calls)
        con.execute("CREATE VIEW items AS SELECT * FROM items_arrow")
        con.execute("CREATE VIEW calls AS SELECT * FROM calls_arrow")
        return cls(con, "database")

    @classmethod
    def from_parquet(cls, directory: str | Path, principal: Principal, *, root_path: str) -> Olap:
        """Views over the snapshot in ``directory``, restricted to the principal's
        jurisdiction for ``analysis.read`` and to ``root_path``."""
        d = Path(directory)
        con = duckdb.connect()
        paths = principal.paths_for(ACTION)
        params: list[Any] = [root_path]
        if not paths:
            grant = "FALSE"
        elif "/" in paths:
            grant = "TRUE"
        else:
            grant = " OR ".join("starts_with(scope_path, ?)" for _ in paths)
            params += list(paths)
        where = f"starts_with(scope_path, ?) AND ({grant})"
        for view, name, schema, extra in (("items", ITEMS_FILE, ITEM_SCHEMA, " AND status <> 'merged'"),
                                          ("calls", CALLS_FILE, CALL_SCHEMA, "")):
            file = d / name
            cols = ", ".join(f.name for f in schema)
            if file.exists():
                src = f"read_parquet('{_sql_str(str(file))}')"
                # A snapshot from an older release may lack newer columns: they read as NULL.
                have = set(pq.read_schema(file).names)
                cols = ", ".join(f.name if f.name in have else f"CAST(NULL AS {_DUCK_TYPES[str(f.type)]}) AS {f.name}"
                                 for f in schema)
            else:  # an empty snapshot part: the same columns, no rows
                con.register(f"{view}_empty", schema.empty_table())
                src = f"{view}_empty"
            # DuckDB does not take parameters in view definitions: inline them as literals.
            sql_where = where
            for p in params:
                sql_where = sql_where.replace("?", f"'{_sql_str(p)}'", 1)
            con.execute(f"CREATE VIEW {view} AS SELECT {cols} FROM {src} WHERE {sql_where}{extra}")
        return cls(con, "parquet")

    # ----------------------------------------------------------------------- queries

    def _windows(self, windows: Sequence[Window]) -> None:
        table = pa.table({"name": [w.name for w in windows],
                          "start": pa.array([w.start_utc for w in windows], pa.timestamp("us")),
                          "end": pa.array([w.end_utc for w in windows], pa.timestamp("us"))})
        self.con.register("windows", table)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.con.execute(sql, params or []).fetchall()

    def _call_counts(self, windows: Sequence[Window]) -> str:
        """The calls 警情/案情 inside ``windows`` counted per (window, stream, category, scope
        path), kept in the temporary table this returns the name of: the one scan of the calls
        that ``stream_counts``, ``category_counts`` and ``by_child`` of the same windows share
        (tens of thousands of rows for tens of millions of calls). Registers ``windows``."""
        self._windows(windows)
        key = tuple((w.name, w.start_utc, w.end_utc) for w in windows)
        with self._lock:
            if self._call_counts_of != key:
                self.con.execute(f"""
                    CREATE OR REPLACE TEMP TABLE call_counts AS
                    SELECT w.name, c.stream, c.category, c.scope_path, count(*) AS n
                    FROM (SELECT stream, category, scope_path, occurred_at FROM calls
                          WHERE {_within("occurred_at", windows)}) c
                    JOIN windows w ON c.occurred_at >= w.start AND c.occurred_at < w."end" GROUP BY ALL""")
                self._call_counts_of = key
        return "call_counts"

    def stream_counts(self, windows: Sequence[Window]) -> dict[tuple[str, str], int]:
        """(window, stream) -> count, for the four streams 四情."""
        calls = self._call_counts(windows)
        rows = self.query(f"""
            WITH s AS (
                SELECT CASE WHEN kind = 'hotline' THEN 'opinion' ELSE 'social' END AS stream, created_at AS t
                FROM items WHERE {_within("created_at", windows)})
            SELECT w.name, s.stream, count(*) FROM s JOIN windows w ON s.t >= w.start AND s.t < w."end"
            GROUP BY ALL
            UNION ALL
            SELECT name, stream, sum(n) FROM {calls} GROUP BY ALL""")
        return {(w, s): int(n) for w, s, n in rows}

    def kind_counts(self, windows: Sequence[Window]) -> dict[tuple[str, str], int]:
        """(window, kind) -> count of items created in the window."""
        self._windows(windows)
        rows = self.query(f"""
            SELECT w.name, i.kind, count(*) FROM (SELECT * FROM items WHERE {_within("created_at", windows)}) i
            JOIN windows w ON i.created_at >= w.start AND i.created_at < w."end" GROUP BY ALL""")
        return {(w, k): int(n) for w, k, n in rows}

    def category_counts(self, windows: Sequence[Window]) -> dict[tuple[str, str, str], int]:
        """(window, stream, category code) -> count; stream is ``call``, ``case`` or ``item``."""
        calls = self._call_counts(windows)
        rows = self.query(f"""
            WITH s AS (
                SELECT 'item' AS stream, coalesce(category_code, '') AS category, created_at AS t FROM items
                WHERE {_within("created_at", windows)})
            SELECT w.name, s.stream, s.category, count(*) FROM s
            JOIN windows w ON s.t >= w.start AND s.t < w."end" GROUP BY ALL
            UNION ALL
            SELECT name, stream, category, sum(n) FROM {calls} GROUP BY ALL""")
        return {(w, s, c): int(n) for w, s, c, n in rows}

    def case_points(self, window: Window, *, limit: int = 20_000, seed: int = 12345
                    ) -> tuple[str | None, list[tuple[float, float, datetime]]]:
        """The most frequent case category 案情类别 inside ``window`` and its located cases
        (lon, lat, time), for the near-repeat test; a seeded sample of ``limit`` when more."""
        args = [window.start_utc, window.end_utc]
        top = self.query("""
            SELECT category FROM calls WHERE stream = 'case' AND is_police AND lon IS NOT NULL
              AND occurred_at >= ? AND occurred_at < ? GROUP BY category ORDER BY count(*) DESC, category LIMIT 1""",
                         args)
        if not top:
            return None, []
        rows = self.query(f"""
            SELECT lon, lat, occurred_at FROM calls WHERE stream = 'case' AND is_police AND lon IS NOT NULL
              AND occurred_at >= ? AND occurred_at < ? AND category = ?
            ORDER BY hash(lon, lat, occurred_at, {int(seed)}), occurred_at LIMIT {int(limit)}""", [*args, top[0][0]])
        return str(top[0][0]), [(float(x), float(y), t) for x, y, t in rows]

    def call_category_names(self, windows: Sequence[Window] | None = None) -> dict[tuple[str, str], str]:
        """(stream, category code) -> name 类别名称, over every record, or (with ``windows``) over
        the records inside them only: every category ``category_counts`` of the same windows
        returns, for a fraction of the scan."""
        where = "" if windows is None else f" WHERE {_within('occurred_at', windows)}"
        rows = self.query(f"SELECT stream, category, max(category_name) FROM calls{where} GROUP BY ALL")
        return {(s, c): n or c for s, c, n in rows}

    def rates(self, windows: Sequence[Window]) -> dict[str, dict[str, tuple[float | None, int | None, int]]]:
        """window -> rate name -> (value, numerator, denominator); value None when the
        denominator is 0. Satisfaction's value is a mean, its numerator None."""
        self._windows(windows)
        closed = "status IN ('closed', 'rated')"
        rows = self.query(f"""
            SELECT w.name,
              count(*) FILTER (WHERE i.created_at >= w.start AND i.created_at < w."end"
                               AND i.status <> 'rejected'),
              count(*) FILTER (WHERE i.created_at >= w.start AND i.created_at < w."end"
                               AND i.status <> 'rejected' AND i.{closed} AND i.closed_at < w."end"),
              count(*) FILTER (WHERE i.closed_at >= w.start AND i.closed_at < w."end" AND i.{closed}),
              count(*) FILTER (WHERE i.closed_at >= w.start AND i.closed_at < w."end" AND i.{closed}
                               AND (i.handle_due_at IS NULL OR i.closed_at <= i.handle_due_at)),
              count(i.rating) FILTER (WHERE i.closed_at >= w.start AND i.closed_at < w."end" AND i.{closed}),
              sum(i.rating) FILTER (WHERE i.closed_at >= w.start AND i.closed_at < w."end" AND i.{closed}),
              count(*) FILTER (WHERE i.closed_at >= w.start AND i.closed_at < w."end" AND i.{closed}
                               AND i.rating >= 4),
              count(*) FILTER (WHERE i.created_at >= w.start AND i.created_at < w."end" AND i.kind = 'petition'),
              count(*) FILTER (WHERE i.created_at >= w.start AND i.created_at < w."end" AND i.kind = 'petition'
                               AND i.repeat_of IS NOT NULL),
              count(*) FILTER (WHERE i.created_at >= w.start AND i.created_at < w."end" AND i.kind = 'dispute'
                               AND i.status <> 'rejected'),
              count(*) FILTER (WHERE i.created_at >= w.start AND i.created_at < w."end" AND i.kind = 'dispute'
                               AND i.status <> 'rejected' AND i.{closed} AND i.closed_at < w."end")
            FROM windows w LEFT JOIN items i ON TRUE GROUP BY w.name""")
        out: dict[str, dict[str, tuple[float | None, int | None, int]]] = {}
        for (name, created, closed_n, closed_in, on_time, rated, rating_sum, satisfied,
             petitions, repeats, disputes, resolved) in rows:
            out[name] = {
                "closure_rate": _ratio(closed_n, created),
                "on_time_rate": _ratio(on_time, closed_in),
                "satisfaction": ((float(rating_sum) / rated) if rated else None, None, int(rated)),
                "satisfied_rate": _ratio(satisfied, rated),
                "repeat_petition_rate": _ratio(repeats, petitions),
                "dispute_resolution_rate": _ratio(resolved, disputes),
            }
        return out

    def by_child(self, windows: Sequence[Window], prefix_len: int, overdue_at: datetime
                 ) -> dict[str, dict[str, int]]:
        """Child unit path (the first ``prefix_len`` characters of ``scope_path``) ->
        ``{"calls:<w>", "cases:<w>", "items:<w>", "overdue"}`` counts."""
        calls = self._call_counts(windows)
        t = _naive_utc(overdue_at)
        # Counted per scope path first, cut to the child's prefix after: one substr per path, not per row.
        rows = self.query(f"""
            WITH p AS (
                SELECT i.scope_path, 'items:' || w.name AS key, count(*) AS n
                FROM (SELECT scope_path, created_at FROM items WHERE {_within("created_at", windows)}) i
                JOIN windows w ON i.created_at >= w.start AND i.created_at < w."end" GROUP BY ALL
                UNION ALL
                SELECT scope_path, CASE WHEN stream = 'call' THEN 'calls:' ELSE 'cases:' END || name, n FROM {calls})
            SELECT substr(scope_path, 1, ?), key, sum(n) FROM p WHERE length(scope_path) >= ? GROUP BY ALL
            UNION ALL
            SELECT substr(scope_path, 1, ?), 'overdue', count(*) FROM items
            WHERE length(scope_path) >= ? AND created_at < ? AND (closed_at IS NULL OR closed_at >= ?)
              AND status NOT IN ('rejected') AND handle_due_at < ?
            GROUP BY ALL""", [prefix_len, prefix_len, prefix_len, prefix_len, t, t, t])
        out: dict[str, dict[str, int]] = {}
        for child, key, n in rows:
            out.setdefault(child, {})[key] = int(n)
        return out

    def daily(self, window: Window, utc_offset_hours: int = 8) -> dict[tuple[str, str], int]:
        """(local date ISO, stream) -> count inside ``window`` (China keeps UTC+8 all year)."""
        rows = self.query(f"""
            WITH s AS (
                SELECT CASE WHEN kind = 'hotline' THEN 'opinion' ELSE 'social' END AS stream, created_at AS t
                FROM items
                UNION ALL
                SELECT stream, occurred_at FROM calls)
            SELECT CAST(CAST(t + INTERVAL {int(utc_offset_hours)} HOUR AS DATE) AS VARCHAR), stream, count(*)
            FROM s WHERE t >= ? AND t < ? GROUP BY ALL""", [window.start_utc, window.end_utc])
        return {(d, s): int(n) for d, s, n in rows}


def _within(column: str, windows: Sequence[Window]) -> str:
    """SQL: ``column`` inside one of ``windows``, the bounds written as literals so that DuckDB
    skips the Parquet row groups outside every window (the range join on the registered
    ``windows`` table alone reads every row group). Only ever narrows what that join keeps."""
    if not windows:
        return "FALSE"
    return "(" + " OR ".join(f"({column} >= {_timestamp(w.start_utc)} AND {column} < {_timestamp(w.end_utc)})"
                             for w in windows) + ")"


def _timestamp(t: datetime) -> str:
    """A naive UTC datetime as a DuckDB ``TIMESTAMP`` literal (microseconds kept)."""
    return f"TIMESTAMP '{t.isoformat(sep=' ', timespec='microseconds')}'"


def _ratio(num: int, den: int) -> tuple[float | None, int | None, int]:
    return ((num / den) if den else None, int(num), int(den))


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


# --------------------------------------------------------------------------- snapshots

def export_parquet(session: Session, directory: str | Path, *,
                   progress: Callable[[str, int, int], None] | None = None, batch: int = 100_000) -> dict[str, int]:
    """Write the analysis snapshot 分析快照 (items and police records; analysis columns
    only, no personal data) to ``directory``, atomically per file. Returns row counts."""
    from sqlalchemy import func

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, model, cols, schema, order in (
            (ITEMS_FILE, WorkItem, _item_columns(), ITEM_SCHEMA, WorkItem.id),
            (CALLS_FILE, PoliceRecord, _call_columns(), CALL_SCHEMA, PoliceRecord.occurred_at)):
        total = session.execute(select(func.count()).select_from(model)).scalar_one()
        tmp = d / (name + ".tmp")
        done = 0
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            result = session.execute(select(*cols).order_by(order).execution_options(yield_per=batch))
            for part in result.partitions(batch):
                writer.write_table(_to_arrow(part, schema))
                done += len(part)
                if progress:
                    progress(name, done, total)
        tmp.replace(d / name)
        counts[name] = done
    return counts
