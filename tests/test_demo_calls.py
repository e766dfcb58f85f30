"""Demo police calls and cases 演示警情案情: the generator (deterministic, located in the
right grid and village, plausible shares and patterns) and the load into the small city
(idempotent, and the analysis report now shows calls and cases)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import shapely
from sqlalchemy import func, select

from conftest import fresh_database_url, make_db
from shiyu.demo.calls import (
    BATCH,
    CALL_SIZES,
    CALL_TYPES,
    COLUMNS,
    META_KEY,
    SOURCES,
    emerging_spots,
    generate_calls,
    load_calls,
)
from shiyu.demo.city import DemoCity
from shiyu.demo.load import load_city
from shiyu.domains.analysis.models import PoliceRecord
from shiyu.domains.analysis.olap import CALL_SCHEMA
from shiyu.domains.geo.models import Grid
from shiyu.domains.reports.service import build_report
from shiyu.kit import meta
from shiyu.kit.db import Database
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.authz.principal import Principal

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # noon in Beijing
PERIOD = "2026-10"
CITY = "320100000000"
N, MONTHS = CALL_SIZES["small"]
LOCAL = timedelta(hours=8)


@pytest.fixture(scope="module")
def table(demo_city: DemoCity) -> pa.Table:
    return generate_calls(demo_city, n=N, months=MONTHS, seed=3, now=NOW)


@pytest.fixture(scope="module")
def rows(table: pa.Table) -> dict[str, list[Any]]:
    return table.to_pydict()


@pytest.fixture(scope="module")
def cdb(tmp_path_factory: pytest.TempPathFactory, demo_city: DemoCity) -> Iterator[Database]:
    db = make_db(fresh_database_url(tmp_path_factory.mktemp("calls"), "calls"))
    with db.unit_of_work() as s:
        load_city(s, demo_city)
    with db.unit_of_work() as s:
        assert load_calls(s, demo_city, seed=3, now=NOW) == N
    yield db
    db.dispose()


# --------------------------------------------------------------------------- generator


def test_columns_match_the_snapshot_schema(table: pa.Table) -> None:
    assert table.column_names == list(COLUMNS)
    for f in CALL_SCHEMA:
        assert table.schema.field(f.name).type == f.type, f.name
    assert table.num_rows == N
    assert set(PoliceRecord.__table__.columns.keys()) >= set(COLUMNS)


def test_deterministic_for_a_seed(demo_city: DemoCity) -> None:
    a = generate_calls(demo_city, n=3000, months=13, seed=11, now=NOW)
    b = generate_calls(demo_city, n=3000, months=13, seed=11, now=NOW)
    c = generate_calls(demo_city, n=3000, months=13, seed=12, now=NOW)
    assert a.equals(b) and a.schema.metadata == b.schema.metadata
    assert not a.equals(c)
    assert generate_calls(demo_city, n=0, months=13, seed=11, now=NOW).num_rows == 0


def test_points_lie_in_their_grid_and_scope_is_the_grids_village(
        cdb: Database, demo_city: DemoCity, rows: dict[str, list[Any]]) -> None:
    polys = {g.code: g.polygon for g in demo_city.grids}
    geoms = np.array([polys[c] for c in rows["grid_code"]], dtype=object)
    assert shapely.contains_xy(geoms, np.array(rows["lon"]), np.array(rows["lat"])).all()
    with cdb.unit_of_work(write=False) as s:
        grid = {c: (u, p) for c, u, p in s.execute(select(Grid.code, Grid.unit_code, Grid.scope_path)
                                                   .where(Grid.layer_code == "unified"))}
    for code, unit, path in zip(rows["grid_code"], rows["unit_code"], rows["scope_path"], strict=True):
        assert grid[code] == (unit, path)
    # spread over the whole city, most grids have some
    assert len(set(rows["grid_code"])) > 0.9 * len(demo_city.grids)


def test_shares_of_calls_cases_and_non_police(rows: dict[str, list[Any]]) -> None:
    streams = Counter(rows["stream"])
    assert 0.12 < streams["case"] / N < 0.18
    calls = [(c, p) for s, c, p in zip(rows["stream"], rows["category"], rows["is_police"], strict=True)
             if s == "call"]
    non_police = {t.code for t in CALL_TYPES if not t.is_police}
    assert {t.name for t in CALL_TYPES if not t.is_police} == {"噪音扰民", "水电气求助", "家庭纠纷", "邻里纠纷",
                                                               "走失求助"}
    assert all((c in non_police) == (not p) for c, p in calls)
    assert 0.2 < sum(not p for _, p in calls) / len(calls) < 0.5
    assert all(p for s, p in zip(rows["stream"], rows["is_police"], strict=True) if s == "case")
    assert set(rows["category"]) == {t.code for t in CALL_TYPES}
    names = {t.code: t.name for t in CALL_TYPES}
    assert all(names[c] == n for c, n in zip(rows["category"], rows["category_name"], strict=True))
    assert {(s, src) for s, src in zip(rows["stream"], rows["source"], strict=True)} == set(SOURCES.items())
    assert len(set(zip(rows["stream"], rows["source_id"], strict=True))) == N


def test_times_cover_the_months_sorted_with_daily_weekly_and_yearly_cycles(rows: dict[str, list[Any]]) -> None:
    t = rows["occurred_at"]
    assert t == sorted(t)
    assert NOW.replace(tzinfo=None) - timedelta(days=31 * MONTHS + 1) < t[0] < t[-1] <= NOW.replace(tzinfo=None)
    # every month has records, including the same month a year earlier
    months = Counter(((x + LOCAL).year, (x + LOCAL).month) for x in t)
    assert len(months) >= MONTHS and min(months[m] for m in months if m != (2024, 10)) > 300
    local = [(c, x + LOCAL) for c, x in zip(rows["category_name"], t, strict=True)]

    def share(name: str, cond: Any) -> float:
        got = [x for c, x in local if c == name]
        return sum(map(cond, got)) / len(got)

    night = lambda x: x.hour >= 20 or x.hour < 3  # noqa: E731
    assert share("打架斗殴", night) > share("诈骗", night) + 0.2
    rush = lambda x: x.hour in (7, 8, 17, 18)  # noqa: E731
    assert share("交通事故", rush) > 1.5 * share("家庭纠纷", rush)
    weekend = lambda x: x.weekday() >= 5  # noqa: E731
    assert share("打架斗殴", weekend) > share("交通拥堵", weekend) + 0.1
    summer = lambda x: x.month in (6, 7, 8)  # noqa: E731
    assert share("噪音扰民", summer) > share("水电气求助", summer) + 0.1


def test_space_is_concentrated_with_emerging_hot_spots(table: pa.Table, rows: dict[str, list[Any]]) -> None:
    per_grid = sorted(Counter(rows["grid_code"]).values(), reverse=True)
    top = per_grid[: len(per_grid) // 10]
    assert sum(top) > 0.3 * N  # the busiest tenth of the grids carries much more than a tenth
    spots = emerging_spots(table)
    assert len(spots) == 2
    last = NOW.replace(tzinfo=None) - timedelta(days=30)
    recent = Counter(g for g, x in zip(rows["grid_code"], rows["occurred_at"], strict=True) if x >= last)
    before = Counter(g for g, x in zip(rows["grid_code"], rows["occurred_at"], strict=True)
                     if last - timedelta(days=300) <= x < last - timedelta(days=180))
    ranking = [g for g, _ in recent.most_common()]
    for s in spots:
        assert datetime.fromisoformat(s["start"]) > NOW.replace(tzinfo=None) - timedelta(days=92)
        assert ranking.index(s["grid"]) < 5, s  # among the hottest grids of the last month ...
        assert recent[s["grid"]] > 3 * before[s["grid"]] / 4, s  # ... and far above its own past months


# --------------------------------------------------------------------------- load


def test_load_is_idempotent(cdb: Database, demo_city: DemoCity) -> None:
    with cdb.unit_of_work() as s:
        assert load_calls(s, demo_city, seed=3, now=NOW) == 0
    with cdb.unit_of_work(write=False) as s:
        total = s.execute(select(func.count()).select_from(PoliceRecord)).scalar_one()
        assert total == N
        assert s.execute(select(func.count()).select_from(PoliceRecord)
                         .where(PoliceRecord.batch != BATCH)).scalar_one() == 0
        info = meta.get(s, META_KEY)
        assert info["records"] == N and sum(info["by_stream"].values()) == N
        assert s.execute(select(func.count()).select_from(AuditEntry)
                         .where(AuditEntry.action == "demo.calls")).scalar_one() == 1
        rec = s.execute(select(PoliceRecord).order_by(PoliceRecord.occurred_at.desc()).limit(1)).scalar_one()
        assert rec.occurred_at <= NOW and rec.occurred_at.tzinfo is not None
        assert rec.diverted_item_id is None and rec.lon is not None


def test_report_shows_calls_and_cases(cdb: Database) -> None:
    with cdb.unit_of_work(write=False) as s:
        report = build_report(s, Principal.system("test"), unit_code=CITY, period=PERIOD, now=NOW, permutations=99)
    streams = {r["stream"]: r for r in report["streams"]}
    for stream in ("call", "case"):
        row = streams[stream]
        assert row["current"] > 0 and row["previous"] > 0 and row["last_year"] > 0, row
        assert row["mom"] is not None and row["yoy"] is not None
    assert 0.5 * N / MONTHS < streams["call"]["current"] + streams["case"]["current"] < 1.5 * N / MONTHS
    assert sum(t["calls"] for t in report["townships"]) == streams["call"]["current"]
    assert sum(t["cases"] for t in report["townships"]) == streams["case"]["current"]
    names = {r["name"] for r in report["categories"] if r["stream"] in ("call", "case")}
    assert {"盗窃", "打架斗殴", "盗窃案"} <= names
    assert report["hotspots"]["hot"] > 0
