"""Importing police calls 警情 and cases 案情 (``shiyu analysis import-calls``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import shapely
from sqlalchemy import func, select

from shiyu.domains.analysis import calls
from shiyu.domains.analysis.models import PoliceRecord
from shiyu.domains.geo.models import Grid
from shiyu.domains.geo.rules import UNIFIED_LAYER
from shiyu.kit.errors import Invalid
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit

HEADER = "jqbh,bjsj,jqlb,jqlbmc,x,y,sscode,sfjq,bjrxm,bjrdh\n"
MAPPING = """
[source]
name = "{name}"
stream = "call"
format = "csv"
timezone = "Asia/Shanghai"
datetime_format = "%Y-%m-%d %H:%M:%S"

[columns]
source_id = "jqbh"
occurred_at = "bjsj"
category = "jqlb"
category_name = "jqlbmc"
lon = "x"
lat = "y"
unit = "sscode"
is_police = "sfjq"
true_values = ["1", "是", "Y"]
"""


def grid_points(db: Any, n: int = 3) -> list[tuple[float, float, str, str, str]]:
    """(lon, lat, grid code, village code, scope path) of a point inside each of n unified grids."""
    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(Grid.code, Grid.unit_code, Grid.scope_path, Grid.geom)
                         .where(Grid.layer_code == UNIFIED_LAYER).order_by(Grid.code).limit(n)).all()
    out = []
    for r in rows:
        p = shapely.from_wkb(bytes(r.geom)).representative_point()
        out.append((p.x, p.y, r.code, r.unit_code, r.scope_path))
    return out


def a_village(db: Any) -> tuple[str, str]:
    with db.unit_of_work(write=False) as s:
        row = s.execute(select(Unit.code, Unit.path).where(Unit.kind == "village").order_by(Unit.code)).first()
    assert row is not None
    return row.code, row.path


def write_mapping(tmp: Path, name: str, text: str = MAPPING) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(text.format(name=name), encoding="utf-8")
    return p


def sample_csv(db: Any) -> str:
    pts = grid_points(db)
    village, _ = a_village(db)
    (x0, y0, *_), (x1, y1, *_), (x2, y2, *_) = pts
    return HEADER + "".join([
        f"A1,2026-11-01 08:00:00,0101,盗窃,{x0},{y0},,1,张三,13800138000\n",     # line 2 good
        f"A2,2026-11-01 25:00:00,0101,盗窃,{x1},{y1},,1,,\n",                     # line 3 bad time
        f",2026-11-01 09:00:00,0101,盗窃,{x1},{y1},,1,,\n",                        # line 4 missing id
        f"A4,2026-11-01 09:30:00,0101,盗窃,200.5,{y1},,1,,\n",                     # line 5 lon out of range
        "A5,2026-11-01 10:00:00,0201,纠纷,0.5,0.5,,0,,\n",                          # line 6 outside, no unit
        f"A6,2026-11-01 11:00:00,0301,求助,0.5,0.5,{village},否,,\n",               # line 7 outside, unit → good
        f"A7,2026-11-01 12:00:00,0401,噪音,{x2},{y2},,是,,\n",                       # line 8 good
        "\n",                                                                      # line 9 blank: ignored
        f"A1,2026-11-01 08:00:00,0101,盗窃,{x0},{y0},,1,,\n",                      # line 10 duplicate in file
        f"A8,2026-11-01 13:00:00,0101,盗窃,abc,{y2},,1,,\n",                       # line 11 lon not a number
    ])


def test_import_reports_bad_lines_and_keeps_good_rows(db: Any, tmp_path: Path) -> None:
    pts = grid_points(db)
    village, village_path = a_village(db)
    f = tmp_path / "calls.csv"
    f.write_text(sample_csv(db), encoding="utf-8")
    mapping = calls.load_mapping(write_mapping(tmp_path, "t-basic"))
    seen: list[tuple[int, int]] = []
    with db.unit_of_work() as s:
        result = calls.import_calls(s, Principal.system("test"), f, mapping, progress=lambda d, t: seen.append((d, t)))
    assert result.created == 3
    assert result.duplicates_skipped == 1
    lines = dict(result.bad_rows)
    assert sorted(lines) == [3, 4, 5, 6, 11]
    assert "bad time" in lines[3]
    assert "missing source id" in lines[4]
    assert "lon" in lines[5] and "out of range" in lines[5]
    assert "outside every grid" in lines[6]
    assert "numbers" in lines[11]
    assert seen[-1] == (9, 9)  # the blank line is not a row
    with db.unit_of_work(write=False) as s:
        recs = {r.source_id: r for r in s.execute(select(PoliceRecord).where(PoliceRecord.source == "t-basic"))
                .scalars()}
        assert set(recs) == {"A1", "A6", "A7"}
        a1 = recs["A1"]
        assert a1.grid_code == pts[0][2] and a1.unit_code == pts[0][3] and a1.scope_path == pts[0][4]
        assert a1.occurred_at.isoformat() == "2026-11-01T00:00:00+00:00"  # 08:00 Beijing time
        assert a1.is_police and a1.category == "0101" and a1.category_name == "盗窃"
        assert recs["A6"].grid_code is None and recs["A6"].unit_code == village
        assert recs["A6"].scope_path == village_path and not recs["A6"].is_police
        assert recs["A7"].is_police
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "analysis.import_calls",
                                                   AuditEntry.object_id == result.batch)).scalar_one()
        assert entry.detail["created"] == 3 and entry.detail["bad_rows"] == 5
        # No personal data columns exist at all.
        assert not {"caller_name", "caller_phone", "reporter_name", "reporter_phone"} & set(
            PoliceRecord.__table__.columns.keys())

    # Re-import: idempotent, everything good is a duplicate.
    with db.unit_of_work() as s:
        again = calls.import_calls(s, Principal.system("test"), f, mapping)
    assert again.created == 0 and again.duplicates_skipped == 4 and len(again.bad_rows) == 5
    with db.unit_of_work(write=False) as s:
        n = s.execute(select(func.count()).select_from(PoliceRecord).where(PoliceRecord.source == "t-basic"))
        assert n.scalar_one() == 3


def test_gb18030_and_bom(db: Any, tmp_path: Path) -> None:
    x, y, grid, *_ = grid_points(db, 1)[0]
    text = HEADER + f"G1,2026-11-02 08:00:00,0101,盗窃案件,{x},{y},,是,,\n"
    gb = tmp_path / "gb.csv"
    gb.write_bytes(text.encode("gb18030"))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(text.replace("G1", "B1").encode("utf-8-sig"))
    mapping = calls.load_mapping(write_mapping(tmp_path, "t-enc"))
    with db.unit_of_work() as s:
        r1 = calls.import_calls(s, Principal.system("test"), gb, mapping)
        r2 = calls.import_calls(s, Principal.system("test"), bom, mapping)
    assert (r1.created, r1.bad_rows, r2.created, r2.bad_rows) == (1, [], 1, [])
    with db.unit_of_work(write=False) as s:
        rec = s.execute(select(PoliceRecord).where(PoliceRecord.source == "t-enc", PoliceRecord.source_id == "G1")
                        ).scalar_one()
        assert rec.category_name == "盗窃案件" and rec.grid_code == grid and rec.is_police


def test_iso_times_and_cases_stream(db: Any, tmp_path: Path) -> None:
    x, y, *_ = grid_points(db, 1)[0]
    f = tmp_path / "cases.csv"
    f.write_text("ajbh,fasj,ajlb,x,y\n"
                 f"C1,2026-11-03T08:00:00,050100,{x},{y}\n"
                 f"C2,2026-11-03T08:00:00Z,050100,{x},{y}\n", encoding="utf-8")
    mapping = calls.parse_mapping({"source": {"name": "t-case", "stream": "case"},
                                   "columns": {"source_id": "ajbh", "occurred_at": "fasj", "category": "ajlb",
                                               "lon": "x", "lat": "y"}})
    with db.unit_of_work() as s:
        r = calls.import_calls(s, Principal.system("test"), f, mapping)
    assert r.created == 2 and not r.bad_rows
    with db.unit_of_work(write=False) as s:
        got = dict(s.execute(select(PoliceRecord.source_id, PoliceRecord.occurred_at)
                             .where(PoliceRecord.source == "t-case", PoliceRecord.stream == "case")).tuples().all())
    assert got["C1"].hour == 0 and got["C2"].hour == 8


@pytest.mark.parametrize("data, field", [
    ({"columns": {"source_id": "a", "occurred_at": "b", "category": "c", "unit": "u"}}, "source"),
    ({"source": {"name": "x", "stream": "alarm"},
      "columns": {"source_id": "a", "occurred_at": "b", "category": "c", "unit": "u"}}, "source.stream"),
    ({"source": {"name": "x", "stream": "call", "timezone": "Mars/Base"},
      "columns": {"source_id": "a", "occurred_at": "b", "category": "c", "unit": "u"}}, "source.timezone"),
    ({"source": {"name": "x", "stream": "call"}, "columns": {"occurred_at": "b", "category": "c", "unit": "u"}},
     "columns.source_id"),
    ({"source": {"name": "x", "stream": "call"},
      "columns": {"source_id": "a", "occurred_at": "b", "category": "c", "lon": "x"}}, "columns.lon"),
    ({"source": {"name": "x", "stream": "call"},
      "columns": {"source_id": "a", "occurred_at": "b", "category": "c", "unit": "u", "phone": "p"}},
     "columns.phone"),
])
def test_mapping_errors(data: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as exc:
        calls.parse_mapping(data)
    assert field in [e["field"] for e in exc.value.errors]


def test_bad_files(db: Any, tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[source\nname=", encoding="utf-8")
    with pytest.raises(Invalid):
        calls.load_mapping(bad_toml)
    mapping = calls.load_mapping(write_mapping(tmp_path, "t-badfile"))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,time\n1,2\n", encoding="utf-8")
    with db.unit_of_work() as s, pytest.raises(Invalid, match="missing from the file"):
        calls.import_calls(s, Principal.system("test"), wrong, mapping)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with db.unit_of_work() as s, pytest.raises(Invalid, match="empty"):
        calls.import_calls(s, Principal.system("test"), empty, mapping)


def test_unreadable_parquet_is_a_clear_error(db: Any, tmp_path: Path) -> None:
    mapping = calls.parse_mapping({"source": {"name": "t-pq", "stream": "call", "format": "parquet"},
                                   "columns": {"source_id": "a", "occurred_at": "b", "category": "c",
                                               "unit": "u"}})
    f = tmp_path / "x.parquet"
    f.write_bytes(b"PAR1")
    with db.unit_of_work() as s, pytest.raises(Invalid, match="cannot read Parquet file") as e:
        calls.import_calls(s, Principal.system("test"), f, mapping)
    assert e.value.field == "file"


def test_many_rows_in_batches(db: Any, tmp_path: Path) -> None:
    """5,000 rows (more than two insert batches) all land; speed is measured in benchmarks, not here."""
    pts = grid_points(db, 20)
    lines = [HEADER]
    for i in range(5_000):
        x, y, *_ = pts[i % len(pts)]
        lines.append(f"B{i},2026-11-01 08:{i % 60:02d}:00,0101,盗窃,{x},{y},,1,,\n")
    f = tmp_path / "big.csv"
    f.write_text("".join(lines), encoding="utf-8")
    mapping = calls.load_mapping(write_mapping(tmp_path, "t-big"))
    with db.unit_of_work() as s:
        r = calls.import_calls(s, Principal.system("test"), f, mapping)
    assert r.created == 5_000 and not r.bad_rows


def _stored(db: Any, source: str) -> list[tuple[Any, ...]]:
    cols = (PoliceRecord.source_id, PoliceRecord.stream, PoliceRecord.occurred_at, PoliceRecord.category,
            PoliceRecord.category_name, PoliceRecord.lon, PoliceRecord.lat, PoliceRecord.grid_code,
            PoliceRecord.unit_code, PoliceRecord.scope_path, PoliceRecord.is_police, PoliceRecord.diverted_item_id)
    with db.unit_of_work(write=False) as s:
        return [tuple(r) for r in s.execute(select(*cols).where(PoliceRecord.source == source)
                                            .order_by(PoliceRecord.source_id))]


def test_insert_methods_store_the_same_rows(db: Any, tmp_path: Path) -> None:
    """PostgreSQL writes with COPY by default; the executemany path (SQLite's, and the
    benchmark baseline) stores exactly the same rows and reports the same lines."""
    f = tmp_path / "calls.csv"
    f.write_text(sample_csv(db), encoding="utf-8")
    results = {}
    for method in ("auto", "executemany"):
        mapping = calls.load_mapping(write_mapping(tmp_path, f"t-method-{method}"))
        with db.unit_of_work() as s:
            results[method] = calls.import_calls(s, Principal.system("test"), f, mapping, method=method)
    a, b = results["auto"], results["executemany"]
    assert (a.created, a.duplicates_skipped, a.bad_rows) == (b.created, b.duplicates_skipped, b.bad_rows)
    assert _stored(db, "t-method-auto") == _stored(db, "t-method-executemany") and a.created == 3
    mapping = calls.load_mapping(write_mapping(tmp_path, "t-method-x"))
    with db.unit_of_work() as s:
        if s.get_bind().dialect.name == "postgresql":
            r = calls.import_calls(s, Principal.system("test"), f, mapping, method="copy")
            assert r.created == 3
        else:
            with pytest.raises(ValueError, match="PostgreSQL"):
                calls.import_calls(s, Principal.system("test"), f, mapping, method="copy")
        with pytest.raises(ValueError):
            calls.import_calls(s, Principal.system("test"), f, mapping, method="bulk")  # type: ignore[arg-type]


def test_import_is_all_or_nothing(db: Any, tmp_path: Path) -> None:
    """The rows are written in the caller's transaction: when the import fails half-way
    (here: the progress callback, after the first batch has been written), nothing stays."""
    pts = grid_points(db, 5)
    f = tmp_path / "atomic.csv"
    f.write_text(HEADER + "".join(f"T{i},2026-11-01 08:00:00,0101,盗窃,{pts[i % 5][0]},{pts[i % 5][1]},,1,,\n"
                                  for i in range(calls.BATCH_SIZE * 2 + 10)), encoding="utf-8")
    mapping = calls.load_mapping(write_mapping(tmp_path, "t-atomic"))

    def stop(done: int, total: int) -> None:
        if done > calls.BATCH_SIZE:
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"), db.unit_of_work() as s:
        calls.import_calls(s, Principal.system("test"), f, mapping, progress=stop)
    assert _stored(db, "t-atomic") == []
    with db.unit_of_work() as s:
        assert calls.import_calls(s, Principal.system("test"), f, mapping).created == calls.BATCH_SIZE * 2 + 10


# --------------------------------------------------------------------------- CLI


def cli_env(dbfile: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIYU_")}
    env.update(SHIYU_DATABASE_URL=f"sqlite:///{dbfile}", SHIYU_VAR_DIR=str(dbfile.parent),
               SHIYU_ARGON2_TIME_COST="1", SHIYU_ARGON2_MEMORY_KIB="8192", COLUMNS="200", NO_COLOR="1",
               PYTHONIOENCODING="utf-8")
    return env


def shiyu(dbfile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shiyu.cli", *args], env=cli_env(dbfile), cwd=dbfile.parent,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8", timeout=300)


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dbfile = tmp_path_factory.mktemp("calls_cli") / "shiyu.db"
    for args in (("db", "upgrade"), ("demo", "load", "--size", "small")):
        r = shiyu(dbfile, *args)
        assert r.returncode == 0, r.stderr
    return dbfile


def test_cli_import_calls(cli_db: Path, db: Any, tmp_path: Path) -> None:
    # The CLI database holds the same small demo city (seed 1) as the shared fixture.
    f = tmp_path / "calls.csv"
    f.write_text(sample_csv(db), encoding="utf-8")
    m = write_mapping(tmp_path, "cli")
    r = shiyu(cli_db, "analysis", "import-calls", str(f), "--mapping", str(m))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "imported 3, duplicates skipped 1, bad rows 5" in r.stdout
    assert "line 3: bad time" in r.stdout and "line 11:" in r.stdout
    r = shiyu(cli_db, "analysis", "import-calls", str(f), "--mapping", str(m))
    assert r.returncode == 0 and "imported 0, duplicates skipped 4" in r.stdout

    all_bad = tmp_path / "bad.csv"
    all_bad.write_text(HEADER + "X1,not a time,0101,盗窃,1,1,,1,,\n", encoding="utf-8")
    r = shiyu(cli_db, "analysis", "import-calls", str(all_bad), "--mapping", str(m))
    assert r.returncode == 1 and "line 2: bad time" in r.stdout

    bad_mapping = tmp_path / "broken.toml"
    bad_mapping.write_text('[source]\nname = "x"\nstream = "alarm"\n', encoding="utf-8")
    r = shiyu(cli_db, "analysis", "import-calls", str(f), "--mapping", str(bad_mapping))
    assert r.returncode == 2 and "stream" in r.stderr
    r = shiyu(cli_db, "analysis", "import-calls", str(tmp_path / "nope.csv"), "--mapping", str(m))
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = shiyu(cli_db, "audit", "verify")
    assert r.returncode == 0, r.stdout


# --------------------------------------------------------------------------- diversion 非警务警情分流


def _import_for_diversion(db: Any, tmp_path: Path, name: str) -> dict[str, PoliceRecord]:
    """Three calls in ``db``: N1 non-police at a grid point, N2 non-police placed by its unit
    only (its point lies outside every grid), P1 a police call."""
    x, y, *_ = grid_points(db, 1)[0]
    village, _ = a_village(db)
    f = tmp_path / f"{name}.csv"
    f.write_text(HEADER
                 + f"N1,2026-11-01 08:00:00,0301,求助,{x},{y},,0,张三,13800138000\n"
                 + f"N2,2026-11-01 09:30:00,0401,噪音扰民,0.5,0.5,{village},否,,\n"
                 + f"P1,2026-11-01 10:00:00,0101,盗窃,{x},{y},,1,,\n", encoding="utf-8")
    with db.unit_of_work() as s:
        r = calls.import_calls(s, Principal.system("test"), f, calls.load_mapping(write_mapping(tmp_path, name)))
    assert r.created == 3 and not r.bad_rows
    with db.unit_of_work(write=False) as s:
        recs = {r.source_id: r for r in s.execute(select(PoliceRecord).where(PoliceRecord.source == name)).scalars()}
        s.expunge_all()
    return recs


def _dispatcher(db: Any, unit_code: str) -> Principal:
    """A centre dispatcher 综治中心坐席 of the town ``unit_code`` lies in (or of that town itself)."""
    from shiyu.platform.authz.principal import GrantScope

    with db.unit_of_work(write=False) as s:
        unit = s.execute(select(Unit).where(Unit.code == unit_code)).scalar_one()
        if unit.kind != "town":
            unit = s.execute(select(Unit).where(Unit.code == unit.parent_code)).scalar_one()
        town = unit
    return Principal(user_id=None, username=f"dispatcher-{town.code}", role="dispatcher", unit_code=town.code,
                     grants=(GrantScope("dispatcher", town.code, town.path),))


def test_divert_non_police_call(city_db: Any, tmp_path: Path) -> None:
    from shiyu.domains.analysis.service import divert_call
    from shiyu.domains.items.models import TimelineEntry, WorkItem

    recs = _import_for_diversion(city_db, tmp_path, "t-divert")
    n1, n2 = recs["N1"], recs["N2"]
    with city_db.unit_of_work() as s:
        item = divert_call(s, Principal.system("test"), n1.id)
        item_id = item.id
        assert item.kind == "hotline" and item.status == "reported" and item.number.startswith("RX")
        assert item.source == "police" and item.channel == "非警务警情分流"
        assert (item.lon, item.lat, item.grid_code, item.unit_code) == (n1.lon, n1.lat, n1.grid_code, n1.unit_code)
        assert item.scope_path == n1.scope_path
        assert item.title == "非警务警情分流：求助"
        assert "求助" in item.description and "2026-11-01 08:00" in item.description and "N1" in item.description
        assert "张三" not in item.description and item.reporter_name is None  # no caller data was imported
        assert item.due_at is not None
    with city_db.unit_of_work(write=False) as s:
        assert s.get(PoliceRecord, n1.id).diverted_item_id == item_id  # type: ignore[union-attr]
        stored = s.get(WorkItem, item_id)
        assert stored is not None and stored.channel == "非警务警情分流"
        assert s.execute(select(TimelineEntry.action).where(TimelineEntry.item_id == item_id)).scalars().all() == [
            "report"]
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "analysis.divert_call",
                                                   AuditEntry.object_id == str(n1.id))).scalar_one()
        assert entry.object_type == "police_record" and entry.detail["item"] == item_id
        assert s.execute(select(AuditEntry).where(AuditEntry.action == "item.create",
                                                  AuditEntry.object_id == str(item_id))).scalar_one()

    # A call placed by its unit only becomes an item of that unit, with no point; the town's
    # dispatcher may divert it, as another kind, with a work-item category.
    dispatcher = _dispatcher(city_db, n2.unit_code or "")
    with city_db.unit_of_work() as s:
        item2 = divert_call(s, dispatcher, n2.id, category="HL-TOPIC-01-01")
        assert item2.unit_code == n2.unit_code and item2.lon is None and item2.grid_code is None
        assert item2.category_code == "HL-TOPIC-01-01" and item2.owner_code == dispatcher.unit_code
        item2_id = item2.id
    with city_db.unit_of_work(write=False) as s:
        assert s.get(PoliceRecord, n2.id).diverted_item_id == item2_id  # type: ignore[union-attr]


def test_divert_conflicts_and_scope(city_db: Any, tmp_path: Path) -> None:
    from shiyu.domains.analysis.service import divert_call
    from shiyu.kit.errors import Conflict, NotFound

    recs = _import_for_diversion(city_db, tmp_path, "t-divert2")
    n1, n2, p1 = recs["N1"], recs["N2"], recs["P1"]
    system = Principal.system("test")
    with city_db.unit_of_work() as s:
        first = divert_call(s, system, n1.id).id
    # Twice: 409, nothing new
    with city_db.unit_of_work() as s, pytest.raises(Conflict) as exc:
        divert_call(s, system, n1.id)
    assert exc.value.code == "already_diverted" and exc.value.params["item"] == str(first)
    # A police call 警务警情 is not diverted
    with city_db.unit_of_work() as s, pytest.raises(Conflict) as exc:
        divert_call(s, system, p1.id)
    assert exc.value.code == "police_call"
    # Intake rules still hold: a dispute needs its parties (422) and nothing is linked
    with city_db.unit_of_work() as s, pytest.raises(Invalid):
        divert_call(s, system, n2.id, kind="dispute")
    with city_db.unit_of_work() as s, pytest.raises(Invalid):
        divert_call(s, system, n2.id, kind="alarm")
    # Outside the jurisdiction: 404 (even for the police call: its existence does not leak), audited
    with city_db.unit_of_work(write=False) as s:
        towns = s.execute(select(Unit.code, Unit.path).where(Unit.kind == "town").order_by(Unit.code)).all()
    stranger = _dispatcher(city_db, next(code for code, path in towns
                                         if not any(r.scope_path.startswith(path) for r in (n1, n2, p1))))
    for rec in (n2, p1):
        with city_db.unit_of_work() as s, pytest.raises(NotFound):
            divert_call(s, stranger, rec.id)
    with city_db.unit_of_work() as s, pytest.raises(NotFound):
        divert_call(s, system, 10**9)
    with city_db.unit_of_work(write=False) as s:
        assert s.get(PoliceRecord, n2.id).diverted_item_id is None  # type: ignore[union-attr]
        assert s.get(PoliceRecord, p1.id).diverted_item_id is None  # type: ignore[union-attr]
        denials = s.execute(select(AuditEntry).where(AuditEntry.actor == stranger.username,
                                                     AuditEntry.result == "denied")).scalars().all()
        assert {(d.object_type, d.object_id) for d in denials} == {("police_record", str(n2.id)),
                                                                   ("police_record", str(p1.id))}
