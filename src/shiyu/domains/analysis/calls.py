"""Importing police calls 警情 and cases 案情 from CSV (or Parquet) files with a TOML column
mapping (see docs/police-calls-import.md).

Every row is validated on its own: bad rows are reported with their 1-based line number
(the CSV header is line 1) and a reason, good rows are kept. A row is good when it has a
source id, a parsable time and a category, and its point lies in a unified grid 统一网格 or
it names a known unit. Records already imported (same source, stream and source id) are
skipped, so re-importing a file is idempotent. Good rows are inserted in bulk — on
PostgreSQL with ``COPY ... FROM STDIN`` through psycopg, on SQLite with ``INSERT``
executemany — inside the caller's transaction, so an import is all or nothing; the batch
writes one audit entry with its counts.

No personal data is imported: caller names, phone numbers and ID numbers are never read.
"""

from __future__ import annotations

import csv
import io
import math
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from sqlalchemy import any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from shiyu.domains.analysis.models import STREAMS, PoliceRecord
from shiyu.domains.geo.service import layer_index
from shiyu.kit.errors import Invalid
from shiyu.kit.timeutil import utcnow
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit

#: (done, total) rows processed so far.
Progress = Callable[[int, int], None]
#: How good rows are written (see :func:`import_calls`).
InsertMethod = Literal["auto", "copy", "executemany"]

REQUIRED_COLUMNS = ("source_id", "occurred_at", "category")
OPTIONAL_COLUMNS = ("category_name", "lon", "lat", "unit", "is_police")
DEFAULT_TRUE_VALUES = ("1", "是", "Y")
BATCH_SIZE = 2000
_LOOKUP_CHUNK = 500  # bound parameters per IN (...) query
_ARRAY_LOOKUP_CHUNK = 20_000  # source ids per = ANY(array) query (one bound parameter)
#: Columns written by COPY, in this order (``id`` comes from its sequence).
COPY_COLUMNS = ("stream", "source_id", "source", "occurred_at", "category", "category_name", "lon", "lat",
                "grid_code", "unit_code", "scope_path", "is_police", "diverted_item_id", "imported_at", "batch")
_COPY_SQL = f"COPY police_records ({', '.join(COPY_COLUMNS)}) FROM STDIN"


@dataclass(frozen=True)
class CallMapping:
    """A parsed mapping file: where each field comes from in the source file."""

    name: str
    stream: str
    format: str = "csv"
    timezone: str = "Asia/Shanghai"
    datetime_format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    true_values: tuple[str, ...] = DEFAULT_TRUE_VALUES


@dataclass
class ImportResult:
    created: int = 0
    duplicates_skipped: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)
    batch: str = ""

    @property
    def total(self) -> int:
        return self.created + self.duplicates_skipped + len(self.bad_rows)

    def counts(self) -> dict[str, Any]:
        return {"created": self.created, "duplicates_skipped": self.duplicates_skipped,
                "bad_rows": len(self.bad_rows), "batch": self.batch}


# --------------------------------------------------------------------------- mapping


def parse_mapping(data: dict[str, Any]) -> CallMapping:
    """Validate a mapping (the parsed TOML). Raises ``Invalid`` listing every problem."""
    errors: list[dict[str, Any]] = []

    def err(fld: str, reason: str) -> None:
        errors.append({"field": fld, "reason": reason})

    source = data.get("source")
    columns = data.get("columns")
    if not isinstance(source, dict):
        err("source", "a [source] table is required")
        source = {}
    if not isinstance(columns, dict):
        err("columns", "a [columns] table is required")
        columns = {}
    name = source.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 64:
        err("source.name", "name is required (at most 64 characters)")
    stream = source.get("stream")
    if stream not in STREAMS:
        err("source.stream", "stream must be \"call\" (警情) or \"case\" (案情)")
    fmt = source.get("format", "csv")
    if fmt not in ("csv", "parquet"):
        err("source.format", "format must be \"csv\" or \"parquet\"")
    tz = source.get("timezone", "Asia/Shanghai")
    if not isinstance(tz, str):
        err("source.timezone", "timezone must be an IANA name such as Asia/Shanghai")
    else:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            err("source.timezone", f"unknown time zone {tz!r}")
    dt_format = source.get("datetime_format")
    if dt_format is not None and (not isinstance(dt_format, str) or "%" not in dt_format):
        err("source.datetime_format", "datetime_format must be a strptime format such as \"%Y-%m-%d %H:%M:%S\"")
    cols: dict[str, str] = {}
    true_values: tuple[str, ...] = DEFAULT_TRUE_VALUES
    for key, value in columns.items():
        if key == "true_values":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                err("columns.true_values", "true_values must be a non-empty list of strings")
            else:
                true_values = tuple(value)
            continue
        if key not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            err(f"columns.{key}", f"unknown field {key!r}; known: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
        elif not isinstance(value, str) or not value.strip():
            err(f"columns.{key}", "the column name must be a non-empty string")
        else:
            cols[key] = value.strip()
    for key in REQUIRED_COLUMNS:
        if key not in columns:
            err(f"columns.{key}", f"{key} is required")
    if ("lon" in cols) != ("lat" in cols):
        err("columns.lon", "lon and lat must be mapped together")
    if "lon" not in cols and "unit" not in cols and isinstance(columns, dict) and columns:
        err("columns.lon", "map lon and lat, or unit, so that records can be located")
    if errors:
        raise Invalid("invalid import mapping 映射文件有误", errors=errors)
    assert isinstance(name, str) and isinstance(stream, str) and isinstance(fmt, str) and isinstance(tz, str)
    return CallMapping(name=name.strip(), stream=stream, format=fmt, timezone=tz, datetime_format=dt_format,
                       columns=cols, true_values=true_values)


def load_mapping(path: str | Path) -> CallMapping:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise Invalid(f"cannot read mapping {path}: {exc.strerror or exc}", field="mapping") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Invalid(f"mapping {path} is not valid TOML: {exc}", field="mapping") from exc
    return parse_mapping(data)


# --------------------------------------------------------------------------- reading


def decode(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (which also covers GBK/GB2312)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise Invalid("the file is neither UTF-8 nor GB18030 text", field="file") from exc


def _read_csv(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror or exc}", field="file") from exc
    reader = csv.reader(io.StringIO(decode(raw), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise Invalid(f"{path} is empty: no header line", field="file") from None
    except csv.Error as exc:
        raise Invalid(f"{path}: bad CSV header: {exc}", field="file") from exc

    def rows() -> Iterator[tuple[int, list[str]]]:
        prev = reader.line_num
        while True:
            start = prev + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                prev = reader.line_num
                yield start, [f"\0csv error: {exc}"]
                continue
            prev = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            yield start, row

    return [h.strip() for h in header], rows()


def _read_parquet(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    import pyarrow.parquet as pq  # a base dependency (the analysis layer needs it too)

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several error types for unreadable files
        raise Invalid(f"cannot read Parquet file {path}: {exc}", field="file") from exc
    header = [str(n) for n in table.column_names]
    data = table.to_pydict()

    def rows() -> Iterator[tuple[int, list[str]]]:
        # Line numbers of Parquet rows count like CSV: the first data row is line 2.
        for i in range(table.num_rows):
            yield i + 2, ["" if data[h][i] is None else str(data[h][i]) for h in header]

    return header, rows()


def _read_rows(path: Path, mapping: CallMapping) -> tuple[list[str], list[tuple[int, list[str]]]]:
    header, rows = (_read_parquet if mapping.format == "parquet" else _read_csv)(path)
    missing = [f"{key} → {col}" for key, col in mapping.columns.items() if col not in header]
    if missing:
        raise Invalid("columns named in the mapping are missing from the file: " + ", ".join(missing),
                      field="columns", errors=[{"field": f"columns.{m.split(' ')[0]}",
                                                 "reason": "no such column in the file"} for m in missing])
    return header, list(rows)


# --------------------------------------------------------------------------- rows


@dataclass
class _Row:
    line: int
    source_id: str
    occurred_at: datetime
    category: str
    category_name: str
    lon: float | None
    lat: float | None
    unit: str | None
    is_police: bool


def _parse_time(text: str, mapping: CallMapping, tz: ZoneInfo) -> datetime:
    if mapping.datetime_format:
        value = datetime.strptime(text, mapping.datetime_format)
    else:
        value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


def _parse_row(line: int, cells: Sequence[str], index: dict[str, int], mapping: CallMapping,
               tz: ZoneInfo, true_values: set[str]) -> _Row | str:
    """A parsed row, or the reason it is bad."""
    if len(cells) == 1 and cells[0].startswith("\0"):
        return cells[0][1:]

    def get(key: str) -> str:
        i = index.get(key)
        if i is None or i >= len(cells):
            return ""
        return cells[i].strip()

    source_id = get("source_id")
    if not source_id:
        return f"missing source id ({mapping.columns['source_id']})"
    if len(source_id) > 64:
        return "source id longer than 64 characters"
    when = get("occurred_at")
    if not when:
        return f"missing time ({mapping.columns['occurred_at']})"
    try:
        occurred_at = _parse_time(when, mapping, tz)
    except ValueError:
        return f"bad time {when[:40]!r} (expected {mapping.datetime_format or 'ISO 8601'})"
    category = get("category")
    if not category:
        return f"missing category ({mapping.columns['category']})"
    if len(category) > 64:
        return "category longer than 64 characters"
    lon = lat = None
    lon_s, lat_s = get("lon"), get("lat")
    if lon_s or lat_s:
        try:
            lon, lat = float(lon_s), float(lat_s)
        except ValueError:
            return f"lon/lat must be numbers (got {lon_s[:20]!r}, {lat_s[:20]!r})"
        if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
            return f"lon {lon_s[:20]} out of range [-180, 180]"
        if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
            return f"lat {lat_s[:20]} out of range [-90, 90]"
    flag = get("is_police")
    is_police = True if "is_police" not in index else flag.casefold() in true_values
    return _Row(line, source_id, occurred_at, category, get("category_name")[:100], lon, lat,
                get("unit") or None, is_police)


# --------------------------------------------------------------------------- import


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


#: A located row: the row, its grid (None when placed by unit code), unit and scope path.
_Located = tuple[_Row, str | None, str | None, str]


def _values(row: _Row, grid: str | None, unit_code: str | None, scope_path: str, mapping: CallMapping,
            now: datetime, batch: str) -> dict[str, Any]:
    return {
        "stream": mapping.stream, "source_id": row.source_id, "source": mapping.name,
        "occurred_at": row.occurred_at, "category": row.category, "category_name": row.category_name,
        "lon": row.lon, "lat": row.lat, "grid_code": grid, "unit_code": unit_code,
        "scope_path": scope_path, "is_police": row.is_police, "diverted_item_id": None,
        "imported_at": now, "batch": batch,
    }


def _store_executemany(session: Session, mapping: CallMapping, located: Sequence[_Located], result: ImportResult,
                       report: Progress, done: int, total: int) -> None:
    """Batch by batch: look up which source ids of the batch are already stored, then
    ``INSERT`` the new rows with executemany. Fast on SQLite; on PostgreSQL each look-up
    filters through every row this import has written so far (uncommitted rows without
    planner statistics: the source id is not used as an index condition), so the import
    grows quadratically — about 130 s per 100,000 rows, against 3 s with ``_store_copy``."""
    seen: set[str] = set()
    now = utcnow()
    for chunk in _chunks(located, BATCH_SIZE):
        ids = list({row.source_id for row, *_ in chunk} - seen)
        existing: set[str] = set()
        for sub in _chunks(ids, _LOOKUP_CHUNK):
            existing.update(session.execute(
                select(PoliceRecord.source_id).where(PoliceRecord.source == mapping.name,
                                                     PoliceRecord.stream == mapping.stream,
                                                     PoliceRecord.source_id.in_(sub))).scalars())
        values: list[dict[str, Any]] = []
        for row, grid, unit_code, scope_path in chunk:
            if row.source_id in seen or row.source_id in existing:
                result.duplicates_skipped += 1
                continue
            seen.add(row.source_id)
            values.append(_values(row, grid, unit_code, scope_path, mapping, now, result.batch))
        if values:
            session.execute(insert(PoliceRecord), values)
            result.created += len(values)
        done += len(chunk)
        report(done, total)


def _stored_ids(session: Session, mapping: CallMapping, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are already stored for the mapping's source and stream, with one
    ``source_id = ANY(array)`` query per 20,000 ids (PostgreSQL). Run before anything of
    the file is written, so the lookups never scan this import's own rows."""
    found: set[str] = set()
    for sub in _chunks(ids, _ARRAY_LOOKUP_CHUNK):
        param = bindparam("source_ids", list(sub), type_=ARRAY(PoliceRecord.__table__.c.source_id.type))
        found.update(session.execute(
            select(PoliceRecord.source_id).where(PoliceRecord.source == mapping.name,
                                                 PoliceRecord.stream == mapping.stream,
                                                 PoliceRecord.source_id == any_(param))).scalars())
    return found


def _store_copy(session: Session, mapping: CallMapping, located: Sequence[_Located], result: ImportResult,
                report: Progress, done: int, total: int) -> None:
    """PostgreSQL: look up the stored source ids of the whole file first, then stream the
    new rows with psycopg's ``COPY police_records (...) FROM STDIN`` on the session's own
    connection, so they are part of the session's transaction like any other write."""
    existing = _stored_ids(session, mapping, list(dict.fromkeys(row.source_id for row, *_ in located)))
    seen: set[str] = set()
    now = utcnow()
    session.flush()
    conn = session.connection().connection.driver_connection
    assert conn is not None
    with conn.cursor() as cur, cur.copy(_COPY_SQL) as copy:
        for chunk in _chunks(located, BATCH_SIZE):
            for row, grid, unit_code, scope_path in chunk:
                if row.source_id in seen or row.source_id in existing:
                    result.duplicates_skipped += 1
                    continue
                seen.add(row.source_id)
                copy.write_row((mapping.stream, row.source_id, mapping.name, row.occurred_at, row.category,
                                row.category_name, row.lon, row.lat, grid, unit_code, scope_path, row.is_police,
                                None, now, result.batch))
                result.created += 1
            done += len(chunk)
            report(done, total)


def import_calls(
    session: Session,
    principal: Principal,
    path: str | Path,
    mapping: CallMapping | str | Path,
    *,
    progress: Progress | None = None,
    method: InsertMethod = "auto",
) -> ImportResult:
    """Import police calls or cases from ``path`` as described by ``mapping``.

    Raises ``Invalid`` when the mapping or the file as a whole is unusable (nothing is
    imported then); bad rows are reported in the result and good rows are kept.

    ``method`` picks how good rows are written, always inside the session's transaction:
    ``"auto"`` (the default) is ``"copy"`` on PostgreSQL and ``"executemany"`` on SQLite;
    ``"copy"`` (PostgreSQL only) looks up already imported records once for the whole file
    and streams the new rows with ``COPY ... FROM STDIN``; ``"executemany"`` looks them up
    and inserts them batch by batch with ``INSERT`` executemany (the original path, kept as
    the benchmark baseline, see ``benchmarks/import_calls.py``).
    """
    dialect = session.get_bind().dialect.name
    if method == "auto":
        method = "copy" if dialect == "postgresql" else "executemany"
    elif method == "copy" and dialect != "postgresql":
        raise ValueError("the copy method needs PostgreSQL")
    elif method not in ("copy", "executemany"):
        raise ValueError(f"unknown insert method {method!r}")
    if not isinstance(mapping, CallMapping):
        mapping = load_mapping(mapping)
    path = Path(path)
    _header, raw_rows = _read_rows(path, mapping)
    header_index = {name: i for i, name in enumerate(_header)}
    index = {key: header_index[col] for key, col in mapping.columns.items()}
    tz = ZoneInfo(mapping.timezone)
    true_values = {v.strip().casefold() for v in mapping.true_values}
    total = len(raw_rows)
    result = ImportResult(batch=f"{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}")
    report = progress or (lambda done, total: None)
    report(0, total)

    # 1. Parse every row.
    parsed: list[_Row] = []
    for line, cells in raw_rows:
        row = _parse_row(line, cells, index, mapping, tz, true_values)
        if isinstance(row, str):
            result.bad_rows.append((line, row))
        else:
            parsed.append(row)

    # 2. Locate the points in one vectorised pass over the unified grids.
    idx = layer_index(session)
    lons = np.array([r.lon if r.lon is not None else np.nan for r in parsed], dtype="float64")
    lats = np.array([r.lat if r.lat is not None else np.nan for r in parsed], dtype="float64")
    hits = idx.locator.locate_index_many(lons, lats) if len(parsed) and len(idx.locator) else \
        np.full(len(parsed), -1, dtype="int64")
    fallback_units = {r.unit for r, h in zip(parsed, hits, strict=True) if h < 0 and r.unit}
    unit_paths: dict[str, str] = {}
    for chunk in _chunks(sorted(fallback_units), _LOOKUP_CHUNK):
        unit_paths.update(session.execute(select(Unit.code, Unit.path).where(Unit.code.in_(chunk))).tuples().all())

    located: list[_Located] = []
    for row, hit in zip(parsed, hits, strict=True):
        i = int(hit)
        if i >= 0:
            _name, unit_code, scope_path = idx.meta[i]
            located.append((row, idx.locator.codes[i], unit_code, scope_path))
        elif row.unit and row.unit in unit_paths:
            located.append((row, None, row.unit, unit_paths[row.unit]))
        elif row.unit:
            where = "outside every grid" if row.lon is not None else "has no point"
            result.bad_rows.append((row.line, f"unknown unit code {row.unit[:40]!r} and the record {where}"))
        elif row.lon is not None:
            result.bad_rows.append((row.line, f"point ({row.lon}, {row.lat}) is outside every grid and no unit "
                                              "is given"))
        else:
            result.bad_rows.append((row.line, "no point (lon/lat) and no unit: the record cannot be located"))
    result.bad_rows.sort()
    done = total - len(located)
    report(done, total)

    # 3. Skip duplicates (already imported, or earlier in this file), insert the rest in batches.
    if method == "copy":
        _store_copy(session, mapping, located, result, report, done, total)
    else:
        _store_executemany(session, mapping, located, result, report, done, total)
    session.flush()
    audit.record(session, principal, "analysis.import_calls", object_type="police_records",
                 object_id=result.batch,
                 detail={"source": mapping.name, "stream": mapping.stream, "file": path.name, **result.counts()})
    return result
