"""Every figure of the analysis report equals the same figure computed by a plain SQL
query on the operational database (SQLite or PostgreSQL), from the live database and from
a Parquet snapshot alike; and the report is scoped like every other read."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.orm import Session

from conftest import fresh_database_url, make_db
from shiyu.demo.city import DemoCity
from shiyu.demo.items import load_history
from shiyu.demo.load import load_city
from shiyu.domains.analysis.models import PoliceRecord
from shiyu.domains.analysis.olap import export_parquet
from shiyu.domains.geo.models import Grid
from shiyu.domains.items.models import WorkItem
from shiyu.domains.reports.service import build_report, periods
from shiyu.kit.db import Database
from shiyu.kit.errors import Forbidden, Invalid, NotFound
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import GrantScope, Principal
from shiyu.platform.units.models import Unit
from shiyu.platform.workflow.calendar import LOCAL_TZ

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
PERIOD = "2026-10"
CITY = "320100000000"
CLOSED = ("closed", "rated")
CALL_TYPES = (("call", "01", "盗窃", True), ("call", "02", "打架斗殴", True), ("call", "90", "噪音扰民", False),
              ("case", "A1", "盗窃案", True), ("case", "A2", "诈骗案", True))


def _calls(session: Session, n: int, seed: int) -> None:
    """Police records spread over 14 months, with some exactly on the period's edges."""
    rnd = random.Random(seed)
    grids = session.execute(select(Grid.code, Grid.scope_path, Grid.unit_code, Grid.min_lon, Grid.min_lat,
                                   Grid.max_lon, Grid.max_lat).where(Grid.layer_code == "unified")).all()
    cur = periods(PERIOD)[0]
    edges = [cur.start, cur.end, cur.start - timedelta(microseconds=1), cur.end - timedelta(seconds=1)]
    rows = []
    for i in range(n):
        stream, code, name, police = rnd.choice(CALL_TYPES)
        g = rnd.choice(grids)
        t = edges[i] if i < len(edges) else NOW - timedelta(seconds=rnd.randrange(0, 430 * 86400))
        rows.append({"stream": stream, "source_id": f"T{i}", "source": "test", "occurred_at": t, "category": code,
                     "category_name": name, "grid_code": g.code, "unit_code": g.unit_code, "scope_path": g.scope_path,
                     "is_police": police, "batch": "test",
                     "lon": rnd.uniform(g.min_lon, g.max_lon), "lat": rnd.uniform(g.min_lat, g.max_lat)})
    session.execute(insert(PoliceRecord), rows)


@pytest.fixture(scope="module")
def rdb(tmp_path_factory: pytest.TempPathFactory, demo_city: DemoCity) -> Iterator[Database]:
    db = make_db(fresh_database_url(tmp_path_factory.mktemp("report"), "report"))
    with db.unit_of_work() as s:
        load_city(s, demo_city)
    with db.unit_of_work() as s:
        load_history(s, demo_city, seed=5, now=NOW, total=4000, months=15)
    with db.unit_of_work() as s:
        _calls(s, 3000, seed=5)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def report(rdb: Database) -> dict[str, Any]:
    with rdb.unit_of_work(write=False) as s:
        return build_report(s, Principal.system("test"), unit_code=CITY, period=PERIOD, now=NOW, permutations=99)


@pytest.fixture(scope="module")
def snapshot(rdb: Database, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("snapshot")
    with rdb.unit_of_work(write=False) as s:
        export_parquet(s, d)
    return d


# --------------------------------------------------------------------------- plain SQL

def _in(col: Any, w: Any) -> Any:
    return and_(col >= w.start, col < w.end)


def _items(s: Session, *conds: Any, root: str = f"/{CITY}/") -> int:
    return s.execute(select(func.count()).select_from(WorkItem).where(
        WorkItem.status != "merged", WorkItem.scope_path.startswith(root), *conds)).scalar_one()


def _recs(s: Session, *conds: Any, root: str = f"/{CITY}/") -> int:
    return s.execute(select(func.count()).select_from(PoliceRecord).where(
        PoliceRecord.scope_path.startswith(root), *conds)).scalar_one()


def _stream(s: Session, stream: str, w: Any, root: str = f"/{CITY}/") -> int:
    if stream in ("call", "case"):
        return _recs(s, PoliceRecord.stream == stream, _in(PoliceRecord.occurred_at, w), root=root)
    kind = WorkItem.kind == "hotline" if stream == "opinion" else WorkItem.kind != "hotline"
    return _items(s, kind, _in(WorkItem.created_at, w), root=root)


def _change(cur: int, base: int) -> float | None:
    return (cur - base) / base if base else None


def test_stream_and_kind_counts_with_mom_and_yoy(rdb: Database, report: dict[str, Any]) -> None:
    cur, prev, ly = periods(PERIOD)
    with rdb.unit_of_work(write=False) as s:
        for row in report["streams"]:
            want = [_stream(s, row["stream"], w) for w in (cur, prev, ly)]
            assert [row["current"], row["previous"], row["last_year"]] == want, row["stream"]
            assert row["mom"] == _change(want[0], want[1])
            assert row["yoy"] == _change(want[0], want[2])
        for row in report["kinds"]:
            want = [_items(s, WorkItem.kind == row["kind"], _in(WorkItem.created_at, w)) for w in (cur, prev, ly)]
            assert [row["current"], row["previous"], row["last_year"]] == want, row["kind"]
            assert row["mom"] == _change(want[0], want[1]) and row["yoy"] == _change(want[0], want[2])
    # the data reach back a year, so every stream has a year-over-year base, and the edges count
    assert all(r["last_year"] > 0 for r in report["streams"]), report["streams"]
    assert sum(r["current"] for r in report["streams"]) > 0


def test_category_counts(rdb: Database, report: dict[str, Any]) -> None:
    cur, prev, ly = periods(PERIOD)
    assert {r["stream"] for r in report["categories"]} == {"call", "case", "item"}
    with rdb.unit_of_work(write=False) as s:
        for row in report["categories"]:
            for key, w in (("current", cur), ("previous", prev), ("last_year", ly)):
                if row["stream"] == "item":
                    code = WorkItem.category_code == row["code"] if row["code"] else WorkItem.category_code.is_(None)
                    want = _items(s, code, _in(WorkItem.created_at, w))
                else:
                    want = _recs(s, PoliceRecord.stream == row["stream"], PoliceRecord.category == row["code"],
                                 _in(PoliceRecord.occurred_at, w))
                assert row[key] == want, (row, key)
    calls = [r for r in report["categories"] if r["stream"] == "call"]
    assert [r["current"] for r in calls] == sorted((r["current"] for r in calls), reverse=True)
    assert {r["name"] for r in calls} <= {name for _s, _c, name, _p in CALL_TYPES}


def _rate_sql(s: Session, name: str, w: Any) -> tuple[float | None, int | None, int]:
    created = _in(WorkItem.created_at, w)
    closed_in = and_(_in(WorkItem.closed_at, w), WorkItem.status.in_(CLOSED))
    done_by_end = and_(WorkItem.status.in_(CLOSED), WorkItem.closed_at < w.end)
    if name == "satisfaction":
        n, total = s.execute(select(func.count(WorkItem.rating), func.sum(WorkItem.rating)).where(
            WorkItem.status != "merged", WorkItem.scope_path.startswith(f"/{CITY}/"), closed_in)).one()
        return ((int(total) / n) if n else None, None, n)
    num_den = {
        "closure_rate": ((created, WorkItem.status != "rejected", done_by_end),
                         (created, WorkItem.status != "rejected")),
        "on_time_rate": ((closed_in, or_(WorkItem.handle_due_at.is_(None),
                                         WorkItem.closed_at <= WorkItem.handle_due_at)), (closed_in,)),
        "satisfied_rate": ((closed_in, WorkItem.rating >= 4), (closed_in, WorkItem.rating.is_not(None))),
        "repeat_petition_rate": ((created, WorkItem.kind == "petition", WorkItem.repeat_of.is_not(None)),
                                 (created, WorkItem.kind == "petition")),
        "dispute_resolution_rate": ((created, WorkItem.kind == "dispute", WorkItem.status != "rejected", done_by_end),
                                    (created, WorkItem.kind == "dispute", WorkItem.status != "rejected")),
    }[name]
    num, den = _items(s, *num_den[0]), _items(s, *num_den[1])
    return ((num / den) if den else None, num, den)


def test_rates(rdb: Database, report: dict[str, Any]) -> None:
    cur, prev, ly = periods(PERIOD)
    rates = report["rates"]
    assert set(rates) == {"closure_rate", "on_time_rate", "satisfaction", "satisfied_rate",
                          "repeat_petition_rate", "dispute_resolution_rate"}
    with rdb.unit_of_work(write=False) as s:
        for name, row in rates.items():
            value, num, den = _rate_sql(s, name, cur)
            assert (row["numerator"], row["denominator"]) == (num, den), name
            assert row["value"] == pytest.approx(value, rel=1e-12) if value is not None else row["value"] is None
            assert row["previous"] == pytest.approx(_rate_sql(s, name, prev)[0], rel=1e-12)
            assert row["last_year"] == pytest.approx(_rate_sql(s, name, ly)[0], rel=1e-12)
    assert rates["closure_rate"]["denominator"] > 0 and rates["on_time_rate"]["denominator"] > 0


def test_township_ranking(rdb: Database, report: dict[str, Any]) -> None:
    cur, prev, _ = periods(PERIOD)
    overdue_at = min(cur.end, NOW)
    with rdb.unit_of_work(write=False) as s:
        towns = s.execute(select(Unit.code, Unit.path).where(Unit.level == 3, Unit.kind != "department")).all()
        assert len(report["townships"]) == len(towns)
        by_code = {t["code"]: t for t in report["townships"]}
        for code, path in towns:
            row = by_code[code]
            assert row["calls"] == _stream_rec(s, "call", cur, path)
            assert row["cases"] == _stream_rec(s, "case", cur, path)
            assert row["calls_previous"] == _stream_rec(s, "call", prev, path)
            assert row["items"] == _items(s, _in(WorkItem.created_at, cur), root=path)
            assert row["items_previous"] == _items(s, _in(WorkItem.created_at, prev), root=path)
            assert row["overdue"] == _items(s, WorkItem.created_at < overdue_at, WorkItem.status != "rejected",
                                            or_(WorkItem.closed_at.is_(None), WorkItem.closed_at >= overdue_at),
                                            WorkItem.handle_due_at < overdue_at, root=path)
            assert row["score"] == row["calls"] + row["cases"]
    ranks = [(-t["score"], -t["items"]) for t in report["townships"]]
    assert ranks == sorted(ranks) and [t["rank"] for t in report["townships"]] == list(range(1, len(towns) + 1))


def _stream_rec(s: Session, stream: str, w: Any, root: str) -> int:
    return _recs(s, PoliceRecord.stream == stream, _in(PoliceRecord.occurred_at, w), root=root)


def test_daily_counts_use_beijing_days(rdb: Database, report: dict[str, Any]) -> None:
    cur = periods(PERIOD)[0]
    assert len(report["daily"]) == 31 and report["daily"][0]["date"] == "2026-10-01"
    for stream in ("call", "case", "opinion", "social"):
        total = next(r["current"] for r in report["streams"] if r["stream"] == stream)
        assert sum(d[stream] for d in report["daily"]) == total
    with rdb.unit_of_work(write=False) as s:
        for day in (report["daily"][0], report["daily"][14], report["daily"][-1]):
            start = datetime.fromisoformat(day["date"]).replace(tzinfo=LOCAL_TZ)
            w = type(cur)("d", start, start + timedelta(days=1))
            assert day["call"] == _stream(s, "call", w) and day["social"] == _stream(s, "social", w)


def test_hotspots_and_summary(report: dict[str, Any]) -> None:
    hot = report["hotspots"]
    assert hot["method"] == "getis-ord-gi*" and not hot.get("error")
    assert len(hot["features"]) > 100
    assert sum(f["value"] for f in hot["features"]) > 0
    assert hot["hot"] == sum(f["cls"] == "hot" for f in hot["features"])
    assert report["summary"]["zh"] and report["summary"]["en"]
    total = sum(r["current"] for r in report["streams"])
    assert str(total) in report["summary"]["zh"][0]


def test_parquet_snapshot_gives_the_same_figures(rdb: Database, report: dict[str, Any], snapshot: Path) -> None:
    with rdb.unit_of_work(write=False) as s:
        again = build_report(s, Principal.system("test"), unit_code=CITY, period=PERIOD, now=NOW, permutations=99,
                             snapshot=snapshot)
    assert again["source"] == "parquet"
    for key in ("streams", "kinds", "categories", "rates", "townships", "daily", "hotspots", "warnings"):
        assert again[key] == report[key], key


def _leader(unit_path: str, role: str = "leader") -> Principal:
    code = unit_path.rstrip("/").rsplit("/", 1)[-1]
    return Principal(user_id=999, username="t", role=role, unit_code=code,
                     grants=(GrantScope(role=role, jurisdiction_code=code, path=unit_path),))


def test_report_is_scoped_to_the_jurisdiction(rdb: Database, report: dict[str, Any], snapshot: Path) -> None:
    with rdb.unit_of_work(write=False) as s:
        district = s.execute(select(Unit).where(Unit.level == 2, Unit.kind != "department").order_by(Unit.code)
                             ).scalars().first()
        town = s.execute(select(Unit).where(Unit.level == 3, Unit.kind != "department",
                                            Unit.parent_code == district.code)
                         .order_by(Unit.code)).scalars().first()
        sibling = s.execute(select(Unit).where(Unit.level == 3, Unit.kind != "department",
                                               Unit.parent_code != district.code)
                            .order_by(Unit.code)).scalars().first()
        before = s.execute(select(func.count()).select_from(AuditEntry).where(AuditEntry.result == "denied")
                           ).scalar_one()
    leader = _leader(town.path)
    with rdb.unit_of_work() as s:
        with pytest.raises(NotFound):
            build_report(s, leader, unit_code=CITY, period=PERIOD, now=NOW)
    with rdb.unit_of_work() as s:
        with pytest.raises(NotFound):
            build_report(s, leader, unit_code=sibling.code, period=PERIOD, now=NOW)
    with rdb.unit_of_work() as s:
        with pytest.raises(Forbidden):
            build_report(s, _leader(town.path, role="grid_worker"), unit_code=town.code, period=PERIOD, now=NOW)
    with rdb.unit_of_work(write=False) as s:
        after = s.execute(select(func.count()).select_from(AuditEntry).where(AuditEntry.result == "denied")
                          ).scalar_one()
    assert after == before + 3
    cur = periods(PERIOD)[0]
    for snap in (None, snapshot):
        with rdb.unit_of_work(write=False) as s:
            own = build_report(s, leader, unit_code=town.code, period=PERIOD, now=NOW, permutations=99,
                               snapshot=snap)
            for row in own["streams"]:
                assert row["current"] == _stream(s, row["stream"], cur, root=town.path)
        assert own["unit"]["code"] == town.code
        assert {t["code"] for t in own["townships"]} <= {u for u in _villages(rdb, town.path)}
        city_town = next(t for t in report["townships"] if t["code"] == town.code)
        assert sum(r["current"] for r in own["streams"] if r["stream"] in ("call", "case")) == city_town["score"]


def _villages(rdb: Database, path: str) -> set[str]:
    with rdb.unit_of_work(write=False) as s:
        return set(s.execute(select(Unit.code).where(Unit.level == 4, Unit.path.startswith(path))).scalars())


def test_bad_input(rdb: Database) -> None:
    with rdb.unit_of_work(write=False) as s:
        with pytest.raises(Invalid) as e:
            build_report(s, Principal.system("t"), unit_code=CITY, period="2026-13", now=NOW)
        assert e.value.field == "period"
        with pytest.raises(Invalid) as e:
            build_report(s, Principal.system("t"), unit_code=CITY, period="2027-01", now=NOW)
        assert e.value.field == "period"
        with pytest.raises(NotFound):
            build_report(s, Principal.system("t"), unit_code="999999999999", period=PERIOD, now=NOW)


def test_near_repeat_uses_the_months_top_case_category(rdb: Database, report: dict[str, Any]) -> None:
    from shiyu.domains.analysis.near_repeat import knox, to_metres

    cur = periods(PERIOD)[0]
    nr = report["near_repeat"]
    with rdb.unit_of_work(write=False) as s:
        top = s.execute(select(PoliceRecord.category, func.count()).where(
            PoliceRecord.stream == "case", _in(PoliceRecord.occurred_at, cur), PoliceRecord.lon.is_not(None))
            .group_by(PoliceRecord.category).order_by(func.count().desc(), PoliceRecord.category)).first()
        pts = s.execute(select(PoliceRecord.lon, PoliceRecord.lat, PoliceRecord.occurred_at).where(
            PoliceRecord.stream == "case", PoliceRecord.category == top[0], _in(PoliceRecord.occurred_at, cur))).all()
    assert nr["category"] == top[0] and nr["n"] == len(pts) == top[1]
    x, y = to_metres([p[0] for p in pts], [p[1] for p in pts])
    start = cur.start
    days = [(p[2] - start).total_seconds() / 86400 for p in pts]
    assert knox(x, y, days, permutations=99).observed.tolist() == nr["observed"]
