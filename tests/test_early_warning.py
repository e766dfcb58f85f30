"""Early warning 预警: the count detectors (Poisson threshold, EWMA, CUSUM), the combined
alarm rule, and rising-count / overdue-cluster warnings over a real database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from shiyu.domains.analysis.warnings import (
    Signal,
    all_warnings,
    cusum,
    detect,
    ewma,
    is_alarm,
    overdue_clusters,
    poisson_quantile,
    poisson_tail,
    poisson_threshold,
    rising_counts,
)
from shiyu.domains.items.models import WorkItem
from shiyu.domains.items.schemas import ItemCreate
from shiyu.domains.items.service import create_item
from shiyu.kit.db import Database
from shiyu.platform.authz.principal import GrantScope, Principal
from shiyu.platform.units.models import Unit

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CAT_SPIKE = "HL-TOPIC-01-01"  # 市容环卫
CAT_QUIET = "HL-TOPIC-01-02"  # 市政设施


# --------------------------------------------------------------------------- Poisson tail

def _brute_tail(k: int, mu: float) -> float:
    return 1.0 - sum(math.exp(-mu) * mu ** i / math.factorial(i) for i in range(k))


@given(mu=st.floats(min_value=0.01, max_value=20.0), k=st.integers(min_value=0, max_value=40))
@settings(max_examples=200, deadline=None)
def test_poisson_tail_matches_brute_force(mu: float, k: int) -> None:
    assert poisson_tail(k, mu) == pytest.approx(_brute_tail(k, mu), abs=1e-12)


def test_poisson_tail_far_tail_and_edges() -> None:
    # far tail: summed upward, so it keeps relative precision where 1 - cdf cannot
    exact = sum(math.exp(-2.0) * 2.0 ** i / math.factorial(i) for i in range(30, 80))
    assert poisson_tail(30, 2.0) == pytest.approx(exact, rel=1e-9)
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 0.0) == 0.0
    assert 0.4 < poisson_tail(1001, 1000.0) < 0.5  # large means do not underflow


@pytest.mark.parametrize("mu", [0.2, 1.0, 4.5, 12.0, 60.0])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.001])
def test_poisson_quantile_is_smallest(mu: float, alpha: float) -> None:
    k = poisson_quantile(mu, alpha)
    assert poisson_tail(k, mu) <= alpha
    assert k == 0 or poisson_tail(k - 1, mu) > alpha


# --------------------------------------------------------------------------- detectors

def test_flat_poisson_false_alarm_rate_is_low() -> None:
    rng = np.random.default_rng(20261129)
    runs = 500
    poisson_hits = alarm_hits = 0
    for _ in range(runs):
        mu = rng.uniform(1.0, 20.0)
        series = rng.poisson(mu, size=13)
        sig = poisson_threshold(series[:-1], int(series[-1]), alpha=0.01)
        poisson_hits += sig.flagged
        alarm_hits += is_alarm(detect(series))
    assert poisson_hits / runs < 0.03
    assert alarm_hits / runs < 0.05


def test_sudden_jump_flags_every_method() -> None:
    rng = np.random.default_rng(7)
    series = np.append(rng.poisson(5.0, size=12), 30)
    signals = detect(series)
    assert [s.method for s in signals] == ["poisson", "ewma", "cusum"]
    assert all(s.flagged for s in signals), [s.detail for s in signals]
    assert is_alarm(signals)
    p = signals[0]
    assert p.current == 30 and p.expected == pytest.approx(float(series[:-1].mean()))
    assert p.score == pytest.approx(30 / p.expected)
    assert "Poisson" in p.detail


def test_quiet_series_does_not_flag() -> None:
    assert not any(s.flagged for s in detect([5] * 13))
    assert not any(s.flagged for s in detect([0] * 13))
    assert not is_alarm(detect([5] * 13))


@pytest.mark.parametrize("level", [0, 1, 5, 40])
def test_ewma_cusum_constant_series_do_not_flag(level: int) -> None:
    series = [level] * 30
    e, c = ewma(series), cusum(series)
    assert not e.flagged and not c.flagged
    assert c.score == 0.0
    assert e.expected == level


def test_ewma_cusum_step_change_flags() -> None:
    series = [5] * 10 + [12] * 4
    e, c = ewma(series), cusum(series)
    assert e.flagged and e.score > 3.0 and e.threshold < 12
    assert c.flagged and c.score > c.threshold == 4.0
    # a moderate sustained step the Poisson threshold misses is caught by EWMA + CUSUM together
    p = poisson_threshold(series[:-1], series[-1])
    assert not p.flagged
    assert is_alarm([p, e, c])


def test_small_counts_never_flag_poisson() -> None:
    sig = poisson_threshold([0] * 12, 2)
    assert sig.threshold <= 2 and not sig.flagged  # below 3 items never alarms
    assert poisson_threshold([0] * 12, 3).flagged


def test_insufficient_history() -> None:
    sig = poisson_threshold([1, 2, 1], 20)
    assert not sig.flagged and "insufficient" in sig.detail
    assert not ewma([1, 2, 30]).flagged
    assert not cusum([1, 2, 30]).flagged


def test_seasonal_baseline_uses_same_weekday() -> None:
    # Mondays are busy (20), other days quiet (2); the judged day is a Monday
    weeks = [[20, 2, 2, 2, 2, 2, 2] for _ in range(10)]
    history = [x for w in weeks for x in w]
    seasonal = poisson_threshold(history, 22, season=7)
    plain = poisson_threshold(history, 22)
    assert seasonal.expected == pytest.approx(20.0)
    assert not seasonal.flagged and plain.flagged


def test_is_alarm_rule() -> None:
    def s(method: Any, flagged: bool) -> Signal:
        return Signal(method, flagged, 0.0, 0.0, 0.0, 0.0, "")

    assert is_alarm([s("poisson", True), s("ewma", False), s("cusum", False)])
    assert is_alarm([s("poisson", False), s("ewma", True), s("cusum", True)])
    assert not is_alarm([s("poisson", False), s("ewma", True), s("cusum", False)])
    assert not is_alarm([s("poisson", False), s("ewma", False), s("cusum", True)])
    assert not is_alarm([])


def test_detect_methods_subset_and_unknown() -> None:
    assert [s.method for s in detect([1] * 13, methods=("cusum",))] == ["cusum"]
    with pytest.raises(ValueError):
        detect([1] * 13, methods=("nope",))
    with pytest.raises(ValueError):
        detect([1, -1, 2])


# --------------------------------------------------------------------------- database

SYSTEM = Principal.system()


def _world(db: Database) -> dict[str, Unit]:
    from shiyu.demo.city import generate_city
    from shiyu.demo.load import load_city

    with db.unit_of_work() as s:
        load_city(s, generate_city("small", 1))
    with db.unit_of_work(write=False) as s:
        towns = list(s.execute(select(Unit).where(Unit.kind == "town").order_by(Unit.code)).scalars())
        town = next(t for t in towns if len(list(s.execute(select(Unit).where(
            Unit.parent_code == t.code, Unit.kind == "village")).scalars())) >= 2)
        villages = list(s.execute(select(Unit).where(Unit.parent_code == town.code, Unit.kind == "village")
                                  .order_by(Unit.code)).scalars())
        district = s.execute(select(Unit).where(Unit.code == town.parent_code)).scalar_one()
        s.expunge_all()
    return {"district": district, "town": town, "spike": villages[0], "quiet": villages[1]}


def _add(s: Session, village: str, category: str, when: datetime, n: int = 1) -> list[WorkItem]:
    out = []
    for i in range(n):
        body = ItemCreate(kind="hotline", title=f"预警测试 {category} {i}", unit=village, category=category,
                          source="hotline")
        out.append(create_item(s, SYSTEM, body, idempotency_key=uuid4().hex, now=when + timedelta(minutes=i)).item)
    return out


def _history(s: Session, village: str, category: str, per_week: int, current: int) -> None:
    for w in range(1, 13):
        _add(s, village, category, AS_OF - timedelta(weeks=w, days=3), per_week)
    _add(s, village, category, AS_OF - timedelta(days=2), current)


def test_rising_counts_flags_spike_not_quiet(empty_db: Database) -> None:
    world = _world(empty_db)
    with empty_db.unit_of_work() as s:
        _history(s, world["spike"].code, CAT_SPIKE, 1, 12)  # 1 a week, then 12 in the last 7 days
        _history(s, world["quiet"].code, CAT_QUIET, 3, 3)  # steady 3 a week
        _add(s, world["spike"].code, CAT_QUIET, AS_OF + timedelta(days=1), 20)  # after as_of: ignored
    with empty_db.unit_of_work(write=False) as s:
        by_town = rising_counts(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF)
        assert len(by_town) == 1, by_town
        w = by_town[0]
        assert (w.kind, w.unit_code, w.category, w.method) == ("rising", world["spike"].code, CAT_SPIKE, "poisson")
        assert w.current == 12 and w.expected == pytest.approx(1.0) and w.threshold == 5
        assert w.unit_name in w.message_zh and "市容环卫" in w.message_zh and "近7天 12 件" in w.message_zh
        assert "泊松阈值 5" in w.message_zh and "Poisson" in w.message_en

        by_district = rising_counts(s, SYSTEM, unit_code=world["district"].code, as_of=AS_OF)
        assert [(x.unit_code, x.category) for x in by_district] == [(world["town"].code, CAT_SPIKE)]
        assert by_district[0].unit_name == world["town"].name

        # a week earlier nothing stands out
        assert rising_counts(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF - timedelta(days=7)) == []
        # a village has no administrative children: it judges itself
        own = rising_counts(s, SYSTEM, unit_code=world["spike"].code, as_of=AS_OF)
        assert [(x.unit_code, x.category) for x in own] == [(world["spike"].code, CAT_SPIKE)]


def test_rising_counts_respects_scope(empty_db: Database) -> None:
    from shiyu.kit.errors import DomainError
    from shiyu.platform.authz.principal import GrantScope

    world = _world(empty_db)
    with empty_db.unit_of_work() as s:
        _history(s, world["spike"].code, CAT_SPIKE, 1, 12)
    quiet = world["quiet"]
    leader = Principal(user_id=None, username="quiet-leader", role="leader", unit_code=quiet.code,
                       grants=(GrantScope("leader", quiet.code, quiet.path),))
    nobody = Principal(user_id=None, username="nobody", role="leader", unit_code=None, grants=())
    with empty_db.unit_of_work(write=False) as s:
        # the spike lies outside this leader's jurisdiction 辖区: not seen
        assert rising_counts(s, leader, unit_code=world["town"].code, as_of=AS_OF) == []
        assert len(rising_counts(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF)) == 1
    with empty_db.unit_of_work() as s, pytest.raises(DomainError):
        rising_counts(s, nobody, unit_code=world["town"].code, as_of=AS_OF)


def test_overdue_clusters(empty_db: Database) -> None:
    world = _world(empty_db)
    created = AS_OF - timedelta(days=3)
    with empty_db.unit_of_work() as s:
        late = _add(s, world["spike"].code, CAT_SPIKE, created, 10)
        fine = _add(s, world["quiet"].code, CAT_QUIET, created, 10)
        for i, item in enumerate(late):  # 6 of 10 past their deadline
            item.due_at = AS_OF - timedelta(hours=2) if i < 6 else AS_OF + timedelta(days=2)
            item.sla_state = "ok"
        for i, item in enumerate(fine):  # 2 of 10 overdue: below both thresholds
            item.due_at = AS_OF + timedelta(days=2)
            item.sla_state = "overdue" if i < 2 else "ok"
    with empty_db.unit_of_work(write=False) as s:
        got = overdue_clusters(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF)
        assert len(got) == 1
        w = got[0]
        assert (w.kind, w.unit_code, w.category) == ("overdue_cluster", world["spike"].code, None)
        assert w.current == 6 and w.expected == 10 and w.score == pytest.approx(0.6 / 0.3)
        assert "超期" in w.message_zh and "60%" in w.message_zh
        # stricter thresholds: nothing
        assert overdue_clusters(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF, min_items=7) == []
        assert overdue_clusters(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF, share=0.7) == []
        combined = all_warnings(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF)
        # ten new items each against an empty history also count as rising 新发
        assert {(x.kind, x.unit_code) for x in combined} == {
            ("overdue_cluster", world["spike"].code), ("rising", world["spike"].code), ("rising", world["quiet"].code)}


def test_all_warnings_sorted_by_score(empty_db: Database) -> None:
    world = _world(empty_db)
    with empty_db.unit_of_work() as s:
        _history(s, world["spike"].code, CAT_SPIKE, 1, 12)
        late = _add(s, world["quiet"].code, CAT_QUIET, AS_OF - timedelta(days=1), 5)
        for item in late:
            item.due_at = AS_OF - timedelta(hours=1)
    with empty_db.unit_of_work(write=False) as s:
        got = all_warnings(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF)
        kinds = {(w.kind, w.unit_code) for w in got}
        assert ("rising", world["spike"].code) in kinds
        assert ("overdue_cluster", world["quiet"].code) in kinds
        assert [w.score for w in got] == sorted((w.score for w in got), reverse=True)


# --------------------------------------------------------------------------- warnings become work items 预警转工单

def _raise_world(db: Database) -> dict[str, Unit]:
    """The demo city with a rising count (CAT_SPIKE in the spike village) and an overdue
    cluster (the quiet village) at AS_OF."""
    world = _world(db)
    with db.unit_of_work() as s:
        _history(s, world["spike"].code, CAT_SPIKE, 1, 12)
        late = _add(s, world["quiet"].code, CAT_QUIET, AS_OF - timedelta(days=1), 5)
        for item in late:
            item.due_at = AS_OF - timedelta(hours=1)
    return world


def _warning_items(s: Session) -> list[WorkItem]:
    from shiyu.domains.analysis.warnings import WARNING_CHANNEL

    return list(s.execute(select(WorkItem).where(WorkItem.channel == WARNING_CHANNEL).order_by(WorkItem.id)).scalars())


def test_raise_warnings_makes_one_item_per_warning(empty_db: Database) -> None:
    from shiyu.domains.analysis.service import WARNING_KIND, raise_warnings, warning_key
    from shiyu.domains.items.models import TimelineEntry
    from shiyu.platform.audit.models import AuditEntry

    world = _raise_world(empty_db)
    town = world["town"]
    with empty_db.unit_of_work() as s:
        expected = all_warnings(s, SYSTEM, unit_code=town.code, as_of=AS_OF)
        # the spike; the quiet village's five new late items (a rise against an empty history
        # and an overdue cluster); the spike village's history, past its deadlines
        assert {(w.kind, w.unit_code, w.category) for w in expected} == {
            ("rising", world["spike"].code, CAT_SPIKE), ("rising", world["quiet"].code, CAT_QUIET),
            ("overdue_cluster", world["quiet"].code, None), ("overdue_cluster", world["spike"].code, None)}
        raised = raise_warnings(s, SYSTEM, unit_code=town.code, as_of=AS_OF)
        assert [w for w, _, _ in raised] == expected
        assert all(new for _, _, new in raised)
        assert len({item.id for _, item, _ in raised}) == len(expected)
        ids = {}
        for w, item, _ in raised:
            ids[(w.kind, w.unit_code)] = item.id
            assert item.kind == WARNING_KIND and item.status == "reported"
            assert item.source == "department" and item.channel == "预警"
            # located at the warned village, owned by its town's centre 小事不出村
            assert item.unit_code == w.unit_code and item.owner_code == town.code
            assert item.lon is None and item.grid_code is None
            assert w.message_zh in item.description and warning_key(w, AS_OF) in item.description
            assert f"（{w.method}）" in item.description
            assert item.due_at is not None  # the deadline rules applied
            if w.kind == "rising":
                name = {CAT_SPIKE: "市容环卫", CAT_QUIET: "市政设施"}[w.category or ""]
                assert item.title == f"预警：{w.unit_name}{name}数量异常上升"
                assert item.category_code == w.category  # a hotline category: kept on the item
            else:
                assert item.title == f"预警：{w.unit_name}超期工单聚集"
                assert item.category_code is None
    with empty_db.unit_of_work(write=False) as s:
        assert [i.id for i in _warning_items(s)] == sorted(ids.values())
        for (kind, _unit), item_id in ids.items():
            actions = set(s.execute(select(AuditEntry.action).where(
                AuditEntry.object_type == "work_item", AuditEntry.object_id == str(item_id))).scalars())
            assert {"item.create", "analysis.raise_warning"} <= actions
            entry = s.execute(select(AuditEntry).where(AuditEntry.action == "analysis.raise_warning",
                                                       AuditEntry.object_id == str(item_id))).scalar_one()
            assert entry.detail["kind"] == kind and entry.detail["key"].startswith(f"warning:{kind}:")
            steps = list(s.execute(select(TimelineEntry.action).where(TimelineEntry.item_id == item_id)).scalars())
            assert steps == ["report"]

    # Raising again (the same as_of, a later hour of the same day, another principal) creates nothing.
    dispatcher = Principal(user_id=None, username="town-dispatcher", role="dispatcher", unit_code=town.code,
                           grants=(GrantScope("dispatcher", town.code, town.path),))
    for who, when in ((SYSTEM, AS_OF), (SYSTEM, AS_OF + timedelta(hours=3)), (dispatcher, AS_OF)):
        with empty_db.unit_of_work() as s:
            again = raise_warnings(s, who, unit_code=town.code, as_of=when)
            assert {(w.kind, w.unit_code, item.id, new) for w, item, new in again} == {
                (*k, i, False) for k, i in ids.items()}
    with empty_db.unit_of_work(write=False) as s:
        assert len(_warning_items(s)) == 4
        n = s.execute(select(AuditEntry).where(AuditEntry.action == "analysis.raise_warning")).scalars().all()
        assert len(n) == 4

    # The next day is another date window: the warnings still hold and are raised anew.
    with empty_db.unit_of_work() as s:
        next_day = raise_warnings(s, SYSTEM, unit_code=town.code, as_of=AS_OF + timedelta(days=1))
        assert {(w.kind, w.unit_code) for w, _, _ in next_day} == set(ids)
        assert all(new for _, _, new in next_day)
        assert not {item.id for _, item, _ in next_day} & set(ids.values())


def test_raise_warnings_needs_item_create(empty_db: Database) -> None:
    from shiyu.domains.analysis.service import raise_warnings
    from shiyu.kit.errors import Forbidden

    world = _raise_world(empty_db)
    town = world["town"]
    leader = Principal(user_id=None, username="town-leader", role="leader", unit_code=town.code,
                       grants=(GrantScope("leader", town.code, town.path),))
    with empty_db.unit_of_work() as s:
        assert all_warnings(s, leader, unit_code=town.code, as_of=AS_OF)  # the leader sees the warnings
        with pytest.raises(Forbidden):
            raise_warnings(s, leader, unit_code=town.code, as_of=AS_OF)
        assert _warning_items(s) == []


def test_raised_items_do_not_feed_rising_counts(empty_db: Database) -> None:
    """Items raised from warnings are not counted as a rise themselves (no feedback loop)."""
    from shiyu.domains.analysis.warnings import WARNING_CHANNEL

    world = _world(empty_db)
    village = world["quiet"].code

    def add(s: Session, channel: str | None, n: int) -> None:
        for i in range(n):
            body = ItemCreate(kind="hotline", title=f"预警：测试 {i}", unit=village, category=CAT_QUIET,
                              source="department", channel=channel)
            create_item(s, SYSTEM, body, idempotency_key=uuid4().hex, now=AS_OF - timedelta(days=1, minutes=i))

    with empty_db.unit_of_work() as s:
        add(s, WARNING_CHANNEL, 6)
        assert rising_counts(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF) == []
        add(s, "网格排查", 6)
        got = rising_counts(s, SYSTEM, unit_code=world["town"].code, as_of=AS_OF)
        assert [(w.unit_code, w.category, w.current) for w in got] == [(village, CAT_QUIET, 6.0)]


def test_hourly_tick_raises_each_warning_once(empty_db: Database) -> None:
    """The scheduled tick judges every city, district and township; a second run the same
    day makes nothing new."""
    from shiyu.domains.analysis.tasks import warnings_tick

    _raise_world(empty_db)
    with empty_db.unit_of_work() as s:
        made = warnings_tick(s, AS_OF)
        assert made >= 4 and len(_warning_items(s)) == made
    with empty_db.unit_of_work() as s:
        assert warnings_tick(s, AS_OF + timedelta(hours=1)) == 0
        assert len(_warning_items(s)) == made


def test_scheduled_jobs_read_first_and_write_in_short_units(empty_db: Database, tmp_path: Any) -> None:
    """Long scheduled jobs run in read-only units (SQLite's one write lock is held for a write
    unit's whole length, which would lock users out); what they write comes after, briefly."""
    from types import SimpleNamespace

    from shiyu.domains.analysis.tasks import register as register_warnings
    from shiyu.domains.reports.tasks import register as register_reports
    from shiyu.platform.jobs.scheduler import Scheduler

    _raise_world(empty_db)
    scheduler = Scheduler(empty_db)
    register_warnings(scheduler, SimpleNamespace(var_dir=tmp_path))
    register_reports(scheduler, SimpleNamespace(var_dir=tmp_path))
    assert {j.name: j.write for j in scheduler.jobs} == {"analysis.warnings": False, "reports.monthly": False}
    warnings_job = next(j for j in scheduler.jobs if j.name == "analysis.warnings")
    with empty_db.unit_of_work(write=False) as s:
        warnings_job.fn(s)
        assert _warning_items(s) == []  # nothing written inside the read-only unit
    with empty_db.unit_of_work(write=False) as s:
        assert len(_warning_items(s)) >= 1  # raised once it ended
