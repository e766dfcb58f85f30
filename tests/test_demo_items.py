"""The demo history 演示历史工单: the small city's year of work items, loaded once into a fresh
database with a fixed ``now``, checked for volume, place, time, lifecycle, people and patterns."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from sqlalchemy import func, select

from conftest import fresh_database_url, make_db
from shiyu.demo.city import DemoCity
from shiyu.demo.items import HISTORY_SIZES, KIND_MIX, META_KEY, HistoryReport, _Planner, load_history
from shiyu.demo.load import load_city
from shiyu.domains.items import rules
from shiyu.domains.items.models import (
    Assignment,
    Category,
    DuplicateLink,
    Party,
    Supervision,
    TimelineEntry,
    WorkItem,
)
from shiyu.kit import meta
from shiyu.kit.db import Database
from shiyu.kit.pii import find_unmasked, validate_resident_id
from shiyu.platform.audit.models import AuditEntry
from shiyu.platform.units.models import Unit
from shiyu.platform.workflow.calendar import LOCAL_TZ

NOW = datetime(2026, 9, 30, 7, 30, tzinfo=UTC)  # 15:30 in Beijing; the year covers a summer and a Spring Festival
SEED = 7
MOBILE = re.compile(r"^1[3-9]\d{9}$")
NUMBER = re.compile(r"^(SJ|RX|JF|XF)\d{8}-[0-9A-F]{6}$")
CLOSED = {"closed", "rated", "rejected", "merged"}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, demo_city: DemoCity) -> Iterator[tuple[Database, HistoryReport]]:
    db = make_db(fresh_database_url(tmp_path_factory.mktemp("history"), "history"))
    with db.unit_of_work() as s:
        load_city(s, demo_city)
    with db.unit_of_work() as s:
        report = load_history(s, demo_city, seed=SEED, now=NOW)
    yield db, report
    db.dispose()


@pytest.fixture(scope="module")
def items(loaded: tuple[Database, HistoryReport]) -> list[Any]:
    db, _ = loaded
    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(WorkItem).order_by(WorkItem.id)).scalars().all()
        for r in rows:
            s.expunge(r)
    return list(rows)


def _all(db: Database, model: Any) -> list[Any]:
    with db.unit_of_work(write=False) as s:
        rows = s.execute(select(model)).scalars().all()
        for r in rows:
            s.expunge(r)
    return list(rows)


# --------------------------------------------------------------------------- volume


def test_counts_by_kind(loaded: tuple[Database, HistoryReport], items: list[Any]) -> None:
    _, report = loaded
    total = HISTORY_SIZES["small"][0]
    assert abs(len(items) - total) <= 0.02 * total
    assert report.items == len(items) and sum(report.by_kind.values()) == len(items)
    kinds = Counter(i.kind for i in items)
    for kind, share in KIND_MIX.items():
        assert abs(kinds[kind] / len(items) - share) < 0.03, (kind, kinds)
    assert report.by_status == dict(sorted(Counter(i.status for i in items).items()))
    assert set(report.by_status) <= set(rules.STATES)


def test_period_ends_at_now(items: list[Any]) -> None:
    created = [i.created_at for i in items]
    assert max(created) <= NOW
    assert min(created) >= NOW - timedelta(days=367)
    assert max(created) >= NOW - timedelta(days=1)


# --------------------------------------------------------------------------- place


def test_points_inside_their_grid_and_unit_chain(loaded: tuple[Database, HistoryReport], items: list[Any],
                                                 demo_city: DemoCity) -> None:
    db, _ = loaded
    grids = {g.code: g for g in demo_city.grids}
    polys = np.array([grids[i.grid_code].polygon for i in items], dtype=object)
    inside = shapely.contains_xy(polys, np.array([i.lon for i in items]), np.array([i.lat for i in items]))
    assert inside.all(), f"{int((~inside).sum())} points outside their grid"
    units = {u.code: u for u in _all(db, Unit)}
    for i in items:
        village = units[i.unit_code]
        town = units[village.parent_code]
        district = units[town.parent_code]
        assert village.kind == "village" and grids[i.grid_code].village_code == village.code
        assert i.scope_path == village.path
        if i.escalation_level == 0:
            assert (i.owner_code, i.owner_path) == (town.code, town.path)
        else:
            assert i.escalation_level == 1
            assert (i.owner_code, i.owner_path) == (district.code, district.path)
        assert i.scope_path.startswith(i.owner_path)


def test_categories_are_leaves_of_the_right_kind(loaded: tuple[Database, HistoryReport], items: list[Any]) -> None:
    db, _ = loaded
    cats = {c.code: c for c in _all(db, Category)}
    parents = {c.parent_code for c in cats.values() if c.parent_code}
    for i in items:
        c = cats[i.category_code]
        assert c.kind == i.kind and c.code not in parents and c.active
    prefixes: dict[str, Counter[str]] = defaultdict(Counter)
    for i in items:
        prefixes[i.kind][i.category_code[:2]] += 1
    events = prefixes["event"]
    assert events["EV"] > 0.7 * sum(events.values()) and events["PS"] > 0.05 * sum(events.values())
    assert set(prefixes["hotline"]) == {"HL"} and set(prefixes["dispute"]) == {"DS"}
    assert set(prefixes["petition"]) == {"PT"}


def test_titles_numbers_and_no_personal_data_in_text(items: list[Any]) -> None:
    numbers = [i.number for i in items]
    assert len(set(numbers)) == len(numbers)
    prefix = {"event": "SJ", "hotline": "RX", "dispute": "JF", "petition": "XF"}
    for i in items:
        assert NUMBER.match(i.number) and i.number.startswith(prefix[i.kind])
        assert i.number[2:10] == i.created_at.astimezone(LOCAL_TZ).strftime("%Y%m%d")
        text = " ".join([i.number, i.title, i.description, i.address or ""])
        assert find_unmasked(text) == [], i.number
        assert re.search(r"[\u4e00-\u9fff]", i.title) and re.search(r"[\u4e00-\u9fff]", i.description)


# --------------------------------------------------------------------------- time


def test_timestamps_are_ordered(loaded: tuple[Database, HistoryReport], items: list[Any]) -> None:
    db, _ = loaded
    for i in items:
        assert i.received_at <= i.created_at <= i.updated_at <= NOW
        if i.accepted_at is not None:
            assert i.created_at <= i.accepted_at <= NOW
        if i.status in CLOSED:
            assert i.closed_at is not None and i.created_at <= i.closed_at <= NOW
            if i.accepted_at is not None:
                assert i.accepted_at <= i.closed_at
            assert i.step is None and i.due_at is None
        else:
            assert i.closed_at is None
        if i.status not in ("reported", "rejected", "merged"):
            assert i.accepted_at is not None
    by_id = {i.id: i for i in items}
    for a in _all(db, Assignment):
        item = by_id[a.item_id]
        assert item.accepted_at is not None and item.accepted_at <= a.assigned_at <= NOW
        if a.acknowledged_at is not None:
            assert a.assigned_at <= a.acknowledged_at <= NOW
        if a.reported_at is not None:
            assert a.acknowledged_at is not None and a.acknowledged_at <= a.reported_at <= NOW
    actions: dict[int, set[str]] = defaultdict(set)
    for e in _all(db, TimelineEntry):
        assert by_id[e.item_id].created_at <= e.at <= NOW
        actions[e.item_id].add(e.action)
    for i in items:
        assert "report" in actions[i.id]
        if i.status in ("closed", "rated"):
            assert "close" in actions[i.id]
        if i.status == "rated":
            assert "rate" in actions[i.id]


def test_open_items_have_current_deadlines(items: list[Any]) -> None:
    open_items = [i for i in items if i.status in rules.OPEN_STATES]
    states = Counter(i.status for i in open_items)
    for s in ("reported", "accepted", "registered", "dispatched", "handling", "feedback"):
        assert states[s] > 0, states
    for i in open_items:
        assert i.step == rules.sla_step(i.status)
        if i.step is not None:
            assert i.due_at is not None
        if i.sla_state == "overdue":
            assert i.due_at < NOW
        elif i.due_at is not None:
            assert i.due_at >= NOW
    assert sum(i.sla_state == "overdue" for i in open_items) >= 5


def test_old_items_are_mostly_closed_and_rated_well(items: list[Any]) -> None:
    old = [i for i in items if i.created_at < NOW - timedelta(days=31)]
    assert sum(i.status in CLOSED for i in old) >= 0.97 * len(old)
    statuses = Counter(i.status for i in old)
    assert statuses["rejected"] > 0 and statuses["merged"] > 0
    ratings = Counter(i.rating for i in items if i.status == "rated")
    rated = sum(ratings.values())
    assert all(i.rating is None for i in items if i.status != "rated")
    assert ratings[4] + ratings[5] >= 0.7 * rated and ratings[1] + ratings[2] > 0
    hotline_closed = [i for i in items if i.kind == "hotline" and i.status in ("closed", "rated")]
    assert sum(i.status == "rated" for i in hotline_closed) > 0.5 * len(hotline_closed)
    late = sum(i.overdue_steps > 0 for i in items if i.status in ("closed", "rated"))
    assert 0.02 < late / sum(i.status in ("closed", "rated") for i in items) < 0.25


def test_escalations_merges_and_supervision(loaded: tuple[Database, HistoryReport], items: list[Any]) -> None:
    db, _ = loaded
    by_id = {i.id: i for i in items}
    assert sum(i.escalation_level == 1 for i in items) > 10
    merged = [i for i in items if i.status == "merged"]
    assert merged and all(i.merged_into is not None for i in merged)
    for i in merged:
        target = by_id[i.merged_into]
        assert target.kind == i.kind and target.category_code == i.category_code
        assert target.created_at <= i.created_at and target.grid_code == i.grid_code
    assert all(i.merged_into is None for i in items if i.status != "merged")
    for d in _all(db, DuplicateLink):  # duplicates reported moments ago, not merged yet
        item, cand = by_id[d.item_id], by_id[d.candidate_id]
        assert d.state == "pending" and item.status == "reported" and 0 <= d.distance_m < 150
        assert (cand.kind, cand.category_code) == (item.kind, item.category_code)
    sups = _all(db, Supervision)
    assert 0 < len(sups) < 0.05 * len(items)
    for s in sups:
        item = by_id[s.item_id]
        assert s.scope_path == item.scope_path and s.issued_at <= s.due_at
        assert item.supervised == (s.state != "resolved")
        assert (s.resolved_at is not None) == (s.state == "resolved")


# --------------------------------------------------------------------------- people and departments


def test_people_have_valid_phones_and_ids(loaded: tuple[Database, HistoryReport], items: list[Any]) -> None:
    db, _ = loaded
    parties = _all(db, Party)
    phones = [i.reporter_phone for i in items if i.reporter_phone] + [p.phone for p in parties if p.phone]
    ids = [i.reporter_id_number for i in items if i.reporter_id_number] + [p.id_number for p in parties
                                                                           if p.id_number]
    assert len(phones) > 1000 and len(ids) > 300
    assert all(MOBILE.match(p) for p in phones)
    for n in set(ids):
        assert validate_resident_id(n).value == n
    names = [p.name for p in parties]
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,4}", n) for n in names)


def test_kind_specific_data(loaded: tuple[Database, HistoryReport], items: list[Any]) -> None:
    db, _ = loaded
    parties: dict[int, list[Any]] = defaultdict(list)
    for p in _all(db, Party):
        parties[p.item_id].append(p)
    by_id = {i.id: i for i in items}
    for i in items:
        if i.kind == "hotline":
            assert i.source == "hotline" and i.reporter_name and i.reporter_phone
            assert i.data["hotline"]["request_type"].startswith("HL-TYPE-")
        elif i.kind == "dispute":
            assert sorted(p.role for p in parties[i.id]) == ["applicant", "respondent"]
            d = i.data["dispute"]
            assert d["risk_level"] in ("low", "medium", "high") and isinstance(d["sessions"], list)
            assert isinstance(d["visits"], list)
            if i.status in ("closed", "rated"):
                assert d["sessions"] and d["sessions"][-1]["result"] == "agreement"
        elif i.kind == "petition":
            (p,) = parties[i.id]
            assert p.role == "petitioner" and p.id_number == i.reporter_id_number
            assert i.source in ("letter", "visit", "online") and i.data["petition"]["channel"] == i.source
            if i.closed_at is not None:
                assert i.reply_text and i.replied_at is not None and i.replied_at <= i.closed_at
            if i.repeat_of is not None:
                first = by_id[i.repeat_of]
                assert first.kind == "petition" and first.category_code == i.category_code
                assert first.reporter_id_number == i.reporter_id_number
                assert timedelta(0) <= i.received_at - first.received_at <= timedelta(days=365)
    sources = Counter(i.source for i in items if i.kind == "event")
    assert sources["grid"] > 0.6 * sum(sources.values()) and sources["sensor"] > 0 and sources["citizen"] > 0
    assert sum(i.repeat_of is not None for i in items) >= 5


def test_assignments_go_to_departments_serving_the_area(loaded: tuple[Database, HistoryReport],
                                                        items: list[Any]) -> None:
    db, _ = loaded
    units = {u.code: u for u in _all(db, Unit)}
    cats = {c.code: c for c in _all(db, Category)}
    abbr = {"public_security": "GA", "urban_management": "CG", "market_regulation": "SC", "housing": "ZJ",
            "justice": "SF", "civil_affairs": "MZ", "emergency": "YJ", "environment": "HB"}
    by_item: dict[int, list[Any]] = defaultdict(list)
    for a in sorted(_all(db, Assignment), key=lambda a: a.id):
        by_item[a.item_id].append(a)
    dispatched = {"dispatched", "handling", "feedback", "verified", "closed", "rated"}
    for i in items:
        got = by_item.get(i.id, [])
        assert bool(got) == (i.status in dispatched), i.number
        for a in got:
            dept = units[a.department_code]
            assert dept.kind == "department"
            serves = dept.path.rsplit("/", 2)[0] + "/"
            assert i.scope_path.startswith(serves)
            assert a.mode == ("whistle" if i.whistle else "dispatch")
        if got:
            want = cats[i.category_code].department
            if want:
                assert got[0].department_code.endswith("-" + abbr[want])
            assert (len(got) >= 2) == i.whistle and len(got) <= 3
    assert sum(i.whistle for i in items) > 20


# --------------------------------------------------------------------------- patterns


def _local(i: Any) -> datetime:
    return i.created_at.astimezone(LOCAL_TZ)


def test_seasonality_and_week(items: list[Any]) -> None:
    street = [i for i in items if i.category_code in ("EV-05-01", "EV-05-04", "EV-05-10", "EV-05-08", "EV-05-11")]
    by_month = Counter(_local(i).month for i in street)
    summer = (by_month[6] + by_month[7] + by_month[8]) / 92
    winter = (by_month[12] + by_month[1] + by_month[2]) / 90
    assert summer > 1.4 * winter, by_month
    events = [i for i in items if i.kind == "event"]
    days = Counter(_local(i).date() for i in events)
    weekday = [n for d, n in days.items() if d.weekday() < 5]
    weekend = [n for d, n in days.items() if d.weekday() >= 5]
    assert statistics.mean(weekday) > 1.4 * statistics.mean(weekend)
    # disputes around the Spring Festival (2026-02-17) run above their yearly mean
    disputes = [i for i in items if i.kind == "dispute"]
    near = sum(abs((_local(i).date() - datetime(2026, 2, 17).date()).days) <= 30 for i in disputes)
    assert near / 61 > 1.15 * len(disputes) / 365
    snow = Counter(_local(i).month for i in items if i.category_code == "EV-04-07")
    assert snow and set(snow) <= {11, 12, 1, 2, 3}


def test_hot_spots_stand_out(loaded: tuple[Database, HistoryReport], items: list[Any], demo_city: DemoCity) -> None:
    db, report = loaded
    spots = report.hot_spots
    steady = [h for h in spots if not h["emerging"]]
    emerging = [h for h in spots if h["emerging"]]
    assert 8 <= len(steady) <= 15 and 2 <= len(emerging) <= 3
    per_grid = Counter(i.grid_code for i in items)
    median = statistics.median(per_grid.get(g.code, 0) for g in demo_city.grids)
    for h in steady:
        assert per_grid[h["grid"]] >= 3 * median, (h["name"], per_grid[h["grid"]], median)
        cats = Counter(i.category_code for i in items if i.grid_code == h["grid"])
        assert sum(cats[c] for c in h["categories"]) > 0.5 * sum(cats.values())
    # repeat locations: the same point reported again and again
    points = Counter((i.lon, i.lat) for i in items)
    assert sum(1 for n in points.values() if n >= 5) >= len(steady)
    # emerging hot spots: nothing of their kind before they start, a clear rise in the last weeks
    for h in emerging:
        start = datetime.fromisoformat(h["start"].replace("Z", "+00:00"))
        assert NOW - timedelta(days=95) <= start <= NOW - timedelta(days=55)
        mine = [i for i in items if i.grid_code == h["grid"] and i.category_code in h["categories"]]
        before = [i for i in mine if i.created_at < start]
        recent = [i for i in mine if i.created_at >= NOW - timedelta(days=28)]
        assert len(recent) >= 10 and len(recent) > 5 * max(len(before), 1) * 28 / 300
    with db.unit_of_work(write=False) as s:
        stored = meta.get(s, META_KEY)
    assert stored["hot_spots"] == spots and stored["items"] == len(items)


def _gi_star(polys: Any, x: Any) -> Any:
    """Getis-Ord Gi* z-scores with binary contiguity weights (touching grids and the grid itself)."""
    n = len(x)
    a, b = shapely.STRtree(polys).query(polys, predicate="intersects")
    w = np.zeros((n, n))
    w[a, b] = 1.0
    xbar, s = x.mean(), x.std()
    wsum = w.sum(axis=1)
    return (w @ x - xbar * wsum) / (s * np.sqrt((n * wsum - wsum**2) / (n - 1)))


def test_gi_star_finds_the_hot_spots(loaded: tuple[Database, HistoryReport], items: list[Any],
                                     demo_city: DemoCity) -> None:
    """Per hot-spot category, Gi* over the unified grids is significant (99%) at the hot spot;
    over all items, the hot spots are among the hottest grids."""
    _, report = loaded
    codes = [g.code for g in demo_city.grids]
    index = {c: k for k, c in enumerate(codes)}
    polys = np.array([g.polygon for g in demo_city.grids], dtype=object)
    for h in report.hot_spots:
        if h["emerging"]:
            continue
        x = np.zeros(len(codes))
        for i in items:
            if i.category_code == h["categories"][0]:
                x[index[i.grid_code]] += 1
        assert _gi_star(polys, x)[index[h["grid"]]] > 2.58, h["name"]
    x = np.zeros(len(codes))
    for i in items:
        x[index[i.grid_code]] += 1
    z = _gi_star(polys, x)
    steady = [index[h["grid"]] for h in report.hot_spots if not h["emerging"]]
    assert np.median(z[steady]) > 1.5 and (z[steady] > 1.0).mean() >= 0.75


# --------------------------------------------------------------------------- the job


def test_one_audit_entry_and_idempotent(loaded: tuple[Database, HistoryReport], demo_city: DemoCity) -> None:
    db, report = loaded
    with db.unit_of_work(write=False) as s:
        entries = s.execute(select(AuditEntry.action, AuditEntry.actor, AuditEntry.detail)
                            .where(AuditEntry.action.like("demo.history%"))).all()
        item_audits = s.execute(select(func.count()).select_from(AuditEntry)
                                .where(AuditEntry.action.like("item.%"))).scalar_one()
    assert len(entries) == 1 and entries[0].actor == "demo-loader" and item_audits == 0
    assert entries[0].detail["items"] == report.items
    with db.unit_of_work() as s:
        before = s.execute(select(func.count()).select_from(WorkItem)).scalar_one()
        again = load_history(s, demo_city, seed=SEED, now=NOW + timedelta(days=3))
        after = s.execute(select(func.count()).select_from(WorkItem)).scalar_one()
    assert again.skipped and again.items == report.items and after == before


def test_deterministic(loaded: tuple[Database, HistoryReport], items: list[Any], demo_city: DemoCity) -> None:
    db, _ = loaded

    def plan(seed: int) -> list[tuple[Any, ...]]:
        with db.unit_of_work(write=False) as s:
            planner = _Planner(s, demo_city, seed=seed, now=NOW, total=HISTORY_SIZES["small"][0],
                               months=HISTORY_SIZES["small"][1])
            its, spots = planner.plan()
            planner.build(its, spots, True)
        return [(it.row["number"], it.row["status"], it.row["lon"], it.row["lat"], it.row["created_at"])
                for it in its]

    stored = [(i.number, i.status, i.lon, i.lat, i.created_at) for i in items]
    assert plan(SEED) == stored
    other = plan(SEED + 1)
    assert len({n for n, *_ in other} & {n for n, *_ in stored}) < 0.01 * len(stored)
    # another process (another string hash seed) plans the same history
    digest = hashlib.sha256("\n".join(f"{n} {s} {x!r} {y!r} {t.isoformat()}" for n, s, x, y, t in stored)
                            .encode()).hexdigest()
    script = (
        "import hashlib, pickle, sys\n"
        "from shiyu.kit.db import Database\n"
        "from shiyu.demo.items import _Planner\n"
        "city, now, seed, url = pickle.loads(sys.stdin.buffer.read())\n"
        "db = Database(url)\n"
        "with db.unit_of_work(write=False) as s:\n"
        "    p = _Planner(s, city, seed=seed, now=now, total=5000, months=12)\n"
        "    its, spots = p.plan()\n"
        "    p.build(its, spots, True)\n"
        "rows = [(r['number'], r['status'], r['lon'], r['lat'], r['created_at']) for r in (it.row for it in its)]\n"
        "text = '\\n'.join(f'{n} {s} {x!r} {y!r} {t.isoformat()}' for n, s, x, y, t in rows)\n"
        "print(hashlib.sha256(text.encode()).hexdigest())\n"
    )
    url = db.engine.url.render_as_string(hide_password=False)
    out = subprocess.run([sys.executable, "-c", script], input=pickle.dumps((demo_city, NOW, SEED, url)),
                         capture_output=True, env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True, timeout=300)
    assert out.stdout.decode().strip() == digest


def test_short_history(tmp_path: Path, demo_city: DemoCity) -> None:
    """``total`` and ``months`` override the size's volume and period."""
    db = make_db(fresh_database_url(tmp_path, "short"))
    with db.unit_of_work() as s:
        load_city(s, demo_city)
        report = load_history(s, demo_city, seed=3, now=NOW, total=600, months=2)
    with db.unit_of_work(write=False) as s:
        created = s.execute(select(func.min(WorkItem.created_at), func.count()).select_from(WorkItem)).one()
    assert report.items == created[1] and 560 <= report.items <= 640
    assert created[0] >= NOW - timedelta(days=63)
    db.dispose()
