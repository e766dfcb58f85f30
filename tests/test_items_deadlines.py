"""Deadlines 时限 of work items: the SLA table, the statutory petition limits 信访 (accept within
15 days, handle within 60, one extension of at most 30), working days 工作日 over the holiday
calendar, escalation 上报上级 and the SLA tick 时限巡检 (due soon, overdue, supervision 督办,
whistle assignments 吹哨报到 that never reported in)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shiyu.demo.city import DemoCity
from shiyu.domains.items import config, rules, service
from shiyu.domains.items.config import SlaTable
from shiyu.domains.items.models import Notification, Supervision, TimelineEntry, WorkItem
from shiyu.domains.items.schemas import ActionIn, ItemCreate, PersonIn, PetitionIn
from shiyu.domains.items.tasks import sla_tick
from shiyu.kit.db import Database
from shiyu.kit.errors import Conflict, Invalid
from shiyu.platform.authz.principal import Principal
from shiyu.platform.workflow.calendar import LOCAL_TZ, Duration

SYSTEM = Principal.system("deadline-test")
HOLIDAYS = json.loads((Path(__file__).parents[1] / "src/shiyu/platform/workflow/holidays_cn.json")
                      .read_text("utf-8"))


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    """A local (Asia/Shanghai) time."""
    return datetime(y, m, d, hh, mm, tzinfo=LOCAL_TZ)


def eod(y: int, m: int, d: int) -> datetime:
    """The end of a local day, the instant every day-based deadline falls on."""
    return datetime.combine(date(y, m, d), time.max, tzinfo=LOCAL_TZ)


def is_working(d: date) -> bool:
    """Oracle straight from the shipped JSON lists (Monday-Friday outside them)."""
    if d.isoformat() in HOLIDAYS["workdays"]:
        return True
    return d.weekday() < 5 and d.isoformat() not in HOLIDAYS["holidays"]


# --------------------------------------------------------------------------- the SLA table alone

D = Duration.parse


def test_sla_table_most_specific_rule_wins() -> None:
    table = SlaTable({
        ("event", None, None, "handle"): D("3wd"),
        ("event", None, "urgent", "handle"): D("4h"),
        ("event", "EV-04", None, "handle"): D("2d"),
        ("event", "EV-04", "urgent", "handle"): D("1h"),
        ("event", "EV-04-03", "high", "handle"): D("30m"),
        ("event", "EV-05-01", None, "handle"): D("8h"),
        ("hotline", None, None, "accept"): D("30m"),
    })
    # Defaults, and a priority-specific default beating the plain one.
    assert table.duration("event", None, None, "handle") == D("3wd")
    assert table.duration("event", None, "normal", "handle") == D("3wd")
    assert table.duration("event", None, "urgent", "handle") == D("4h")
    assert table.duration("event", "EV-01-01", "urgent", "handle") == D("4h")
    # A category rule beats the default; its priority-specific rule beats it in turn.
    assert table.duration("event", "EV-05-01", None, "handle") == D("8h")
    assert table.duration("event", "EV-04", "normal", "handle") == D("2d")
    assert table.duration("event", "EV-04", "urgent", "handle") == D("1h")
    # Ancestors of a category code: EV-04-03 falls back to EV-04, then to the defaults.
    assert table.duration("event", "EV-04-03", None, "handle") == D("2d")
    assert table.duration("event", "EV-04-03", "urgent", "handle") == D("1h")
    assert table.duration("event", "EV-04-03", "high", "handle") == D("30m")
    assert table.duration("event", "EV-04-03-07", "low", "handle") == D("2d")
    assert table.duration("event", "EV-05-01-02", "urgent", "handle") == D("8h")  # category over priority
    assert table.duration("event", "EV-05", "urgent", "handle") == D("4h")  # no rule on the parent
    # Nothing for another kind or a step without rules.
    assert table.duration("dispute", "EV-04-03", None, "handle") is None
    assert table.duration("event", "EV-04-03", None, "register") is None
    assert table.duration("hotline", "HL-TYPE-01", "urgent", "accept") == D("30m")


CATS = st.sampled_from([None, "A-1", "A-1-2", "A-1-2-3", "A-2", "B-1-1"])
PRIS = st.sampled_from([None, "low", "urgent"])
RULE_KEYS = st.tuples(st.sampled_from(["event", "hotline"]), st.sampled_from([None, "A-1", "A-1-2", "A-2", "B-1"]),
                      PRIS, st.sampled_from(["accept", "handle"]))


@given(st.dictionaries(RULE_KEYS, st.integers(0, 100).map(lambda n: Duration(n, "minutes")), max_size=12),
       st.sampled_from(["event", "hotline"]), CATS, PRIS, st.sampled_from(["accept", "handle"]))
def test_sla_table_against_a_precedence_oracle(rules_: dict[Any, Duration], kind: str, cat: str | None,
                                               pri: str | None, step: str) -> None:
    chain = [None] if cat is None else [cat[:i] for i in range(len(cat), 0, -1)
                                        if i == len(cat) or cat[i] == "-"][:-1] + [None]
    # e.g. "A-1-2-3" -> ["A-1-2-3", "A-1-2", "A-1", None]: never the bare root "A".
    candidates = [(c, p) for c in chain for p in dict.fromkeys([pri, None])]
    expected = next((rules_[(kind, c, p, step)] for c, p in candidates if (kind, c, p, step) in rules_), None)
    assert SlaTable(rules_).duration(kind, cat, pri, step) == expected


# --------------------------------------------------------------------------- a real database


@pytest.fixture(scope="module")
def place(demo_city: DemoCity) -> dict[str, str]:
    village = demo_city.units_of_kind("village")[0]
    assert village.parent_code is not None
    town = next(u for u in demo_city.units if u.code == village.parent_code)
    assert town.parent_code is not None
    district = next(u for u in demo_city.units if u.code == town.parent_code)
    assert district.parent_code is not None
    grid = next(g for g in demo_city.grids if g.village_code == village.code)
    pt = grid.polygon.representative_point()
    return {"village": village.code, "town": town.code, "district": district.code, "city": district.parent_code,
            "lon": str(pt.x), "lat": str(pt.y)}


_keys = itertools.count()


def new_item(session: Session, place: dict[str, str], kind: str, now: datetime, *, priority: str = "normal",
             unit: str | None = None, category: str | None = None, received: datetime | None = None) -> WorkItem:
    common: dict[str, Any] = {"kind": kind, "title": "时限测试", "priority": priority, "category": category}
    if kind == "event":
        body = ItemCreate(**common, lon=float(place["lon"]), lat=float(place["lat"]))
    elif kind == "petition":
        body = ItemCreate(**common, unit=unit or place["village"], source="letter", reporter=PersonIn(name="李四"),
                          petition=PetitionIn(channel="letter", matter="拖欠工资", received_at=received))
    else:
        body = ItemCreate(**common, unit=unit or place["village"], source="hotline", reporter=PersonIn(name="张三"))
    return service.create_item(session, SYSTEM, body, idempotency_key=f"dl-{next(_keys)}", now=now).item


def do(session: Session, item: WorkItem, action: str, now: datetime, **kw: Any) -> WorkItem:
    return service.act(session, SYSTEM, item.id, action, ActionIn(**kw), if_match=service.etag(item), now=now)


def notes(session: Session, item: WorkItem, kind: str) -> list[Notification]:
    return list(session.execute(select(Notification).where(Notification.item_id == item.id, Notification.kind == kind)
                                .order_by(Notification.id)).scalars())


def seeded_rules() -> list[dict[str, Any]]:
    return list(config._seed_json("sla.json")["rules"])


def test_seeded_table_matches_the_seed_file(session: Session) -> None:
    table = config.sla_table(session)
    for r in seeded_rules():
        assert table.rules[(r["kind"], r["category"], r["priority"], r["step"])] == D(r["duration"])
    assert table.duration("petition", None, None, "accept") == D("15d")
    assert table.duration("petition", "PT-01", "urgent", "handle") == D("60d")
    assert table.duration("hotline", None, "urgent", "handle") == D("24h")
    assert table.duration("hotline", "HL-TYPE-01", None, "handle") == D("2wd")
    assert table.duration("event", "EV-04-03", None, "handle") == D("4h")
    assert table.duration("event", "EV-04-03", None, "accept") == D("1h")  # no category rule: the default


@pytest.mark.parametrize("kind", rules.KINDS)
@pytest.mark.parametrize("step", ["register", "close", "rate", "reply"])
def test_steps_without_a_rule_have_no_deadline(session: Session, kind: str, step: str) -> None:
    assert config.deadline(session, at(2025, 9, 26, 10), kind, None, None, step) is None
    assert config.deadline(session, at(2025, 9, 26, 10), kind, None, "urgent", step) is None


# --------------------------------------------------------------------------- petitions 信访


@pytest.mark.parametrize(("received", "due"), [
    (at(2025, 3, 3, 9), eod(2025, 3, 18)),  # plain Tuesday
    (at(2025, 9, 20, 9), eod(2025, 10, 9)),  # day 15 is in National Day 10-01..08
    (at(2026, 2, 1, 16), eod(2026, 2, 24)),  # day 15 is in Spring Festival 02-15..23
    (at(2025, 9, 13, 23, 30), eod(2025, 9, 28)),  # day 15 is Sunday 09-28, an adjusted working day
    (at(2025, 11, 1, 0, 30), eod(2025, 11, 17)),  # day 15 is Sunday 11-16: the next Monday
])
def test_petition_must_be_accepted_within_15_days(session: Session, place: dict[str, str], received: datetime,
                                                  due: datetime) -> None:
    # Registered a few days after it was received: the limit still counts from receipt.
    item = new_item(session, place, "petition", received + timedelta(days=3), received=received)
    assert item.received_at == received
    assert (item.status, item.step) == ("reported", "accept")
    assert item.due_at == due
    assert item.due_at.astimezone(LOCAL_TZ).date() >= (received + timedelta(days=15)).astimezone(LOCAL_TZ).date()


@pytest.mark.parametrize(("accepted", "due"), [
    (at(2025, 12, 17, 10), eod(2026, 2, 24)),  # day 60 (02-15) falls in Spring Festival
    (at(2025, 7, 3, 10), eod(2025, 9, 1)),  # a plain Monday
    (at(2025, 8, 2, 10), eod(2025, 10, 9)),  # day 60 (10-01) falls in National Day
])
def test_petition_must_be_handled_within_60_days_of_acceptance(session: Session, place: dict[str, str],
                                                               accepted: datetime, due: datetime) -> None:
    item = new_item(session, place, "petition", accepted - timedelta(days=5))
    do(session, item, "accept", accepted)
    assert item.accepted_at == accepted
    assert item.handle_due_at == due
    # Every later step before the handling is done runs against the same statutory deadline.
    assert (item.step, item.due_at) == ("dispatch", due)
    do(session, item, "register", accepted + timedelta(days=1))
    do(session, item, "dispatch", accepted + timedelta(days=2), departments=[f"{place['town']}-SF"])
    assert (item.step, item.due_at, item.handle_due_at) == ("acknowledge", due, due)
    do(session, item, "acknowledge", accepted + timedelta(days=3), departments=[f"{place['town']}-SF"])
    assert (item.step, item.due_at) == ("handle", due)


def test_petition_extends_once_by_at_most_30_days(session: Session, place: dict[str, str]) -> None:
    item = new_item(session, place, "petition", at(2025, 7, 1, 9))
    do(session, item, "accept", at(2025, 7, 3, 10))
    assert item.handle_due_at == eod(2025, 9, 1)
    with pytest.raises(Invalid) as too_long:
        do(session, item, "extend", at(2025, 8, 20), days=31, note="情况复杂")
    assert too_long.value.field == "days" and too_long.value.code == "extension_too_long"
    assert (item.extensions, item.handle_due_at) == (0, eod(2025, 9, 1))
    with pytest.raises(Invalid) as no_days:
        do(session, item, "extend", at(2025, 8, 20), note="情况复杂")
    assert no_days.value.field == "days"
    # 30 calendar days from the old deadline: 10-01, in National Day, rolls to 10-09.
    do(session, item, "extend", at(2025, 8, 20), days=30, note="情况复杂")
    assert item.extensions == 1
    assert item.handle_due_at == eod(2025, 10, 9)
    assert item.due_at == eod(2025, 10, 9)
    timeline = service.timeline(session, SYSTEM, item.id)
    assert timeline[-1].action == "extend" and timeline[-1].note == "情况复杂"
    with pytest.raises(Conflict) as twice:
        do(session, item, "extend", at(2025, 8, 21), days=1, note="再延")
    assert twice.value.code == "extension_limit" and twice.value.params == {"limit": 1}
    assert (item.extensions, item.handle_due_at) == (1, eod(2025, 10, 9))
    # The extended deadline carries through dispatch and handling.
    do(session, item, "register", at(2025, 8, 22))
    do(session, item, "dispatch", at(2025, 8, 22, 11), departments=[f"{place['town']}-SF"])
    do(session, item, "acknowledge", at(2025, 8, 22, 12), departments=[f"{place['town']}-SF"])
    assert (item.step, item.due_at) == ("handle", eod(2025, 10, 9))


def test_other_kinds_extend_twice(session: Session, place: dict[str, str]) -> None:
    start = at(2025, 9, 26, 10)
    item = new_item(session, place, "hotline", start)
    do(session, item, "accept", start)
    do(session, item, "register", start)
    do(session, item, "dispatch", start, departments=[f"{place['town']}-CG"])
    assert item.handle_due_at == eod(2025, 10, 10)
    do(session, item, "extend", start, days=1, note="延期")  # 10-11 is a working Saturday
    assert item.handle_due_at == eod(2025, 10, 11)
    do(session, item, "extend", start, days=1, note="延期")  # Sunday 10-12: to Monday
    assert item.handle_due_at == eod(2025, 10, 13)
    with pytest.raises(Conflict) as exc:
        do(session, item, "extend", start, days=1, note="延期")
    assert exc.value.code == "extension_limit" and exc.value.params == {"limit": 2}


# --------------------------------------------------------------------------- hotline and event deadlines


def test_hotline_deadlines_follow_the_seed(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 9, 26, 10)  # Friday; Sunday 09-28 is a working day, 10-01..08 are off
    item = new_item(session, place, "hotline", t)
    assert (item.step, item.due_at) == ("accept", t + timedelta(minutes=30))
    do(session, item, "accept", t + timedelta(minutes=10))
    assert (item.step, item.due_at) == ("dispatch", t + timedelta(minutes=10, hours=2))
    do(session, item, "register", t + timedelta(minutes=20))
    assert (item.step, item.due_at) == ("dispatch", t + timedelta(minutes=20, hours=2))
    assert item.handle_due_at is None
    do(session, item, "dispatch", t + timedelta(minutes=30), departments=[f"{place['town']}-CG"])
    ack = t + timedelta(minutes=30, hours=2)
    assert (item.step, item.due_at) == ("acknowledge", ack)
    (a,) = service.assignments_of(session, item.id)
    assert a.ack_due_at == ack
    # 5 working days after Friday 09-26: 09-28 (adjusted Sunday), 09-29, 09-30, 10-09, 10-10.
    assert item.handle_due_at == eod(2025, 10, 10)
    do(session, item, "acknowledge", t + timedelta(hours=1), departments=[f"{place['town']}-CG"])
    assert (item.step, item.due_at) == ("handle", eod(2025, 10, 10))
    do(session, item, "feedback", at(2025, 10, 9, 15), departments=[f"{place['town']}-CG"], note="已处理")
    assert (item.step, item.due_at) == ("verify", eod(2025, 10, 13))  # 3 working days: 10, 11 (adjusted Sat), 13
    do(session, item, "verify", at(2025, 10, 9, 16), passed=True)
    assert (item.status, item.step, item.due_at) == ("verified", None, None)
    do(session, item, "close", at(2025, 10, 9, 17))
    assert (item.status, item.step, item.due_at) == ("closed", None, None)


def test_urgent_hotline_gets_the_tighter_rules(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 9, 30, 10)
    item = new_item(session, place, "hotline", t, priority="urgent")
    assert item.due_at == t + timedelta(minutes=15)
    do(session, item, "accept", t)
    assert item.due_at == t + timedelta(minutes=30)
    do(session, item, "register", t)
    do(session, item, "dispatch", t, departments=[f"{place['town']}-GA"])
    assert item.due_at == t + timedelta(minutes=30)
    assert item.handle_due_at == t + timedelta(hours=24)  # round the clock, even on National Day
    # A high-priority hotline has no accept rule of its own: the default applies.
    high = new_item(session, place, "hotline", t, priority="high")
    assert high.due_at == t + timedelta(minutes=30)


def test_event_category_rules(session: Session, place: dict[str, str]) -> None:
    t = at(2026, 2, 13, 18)  # Friday evening before Spring Festival
    item = new_item(session, place, "event", t, category="EV-04-03")
    assert item.due_at == t + timedelta(hours=1)  # accept: the event default
    do(session, item, "accept", t)
    assert item.due_at == t + timedelta(minutes=15)  # dispatch: the category's own rule
    do(session, item, "register", t)
    do(session, item, "dispatch", t, departments=[f"{place['town']}-CG"])
    assert item.due_at == t + timedelta(minutes=30)
    assert item.handle_due_at == t + timedelta(hours=4)
    plain = new_item(session, place, "event", t, category="EV-01-02", priority="low")
    do(session, plain, "accept", t)
    do(session, plain, "register", t)
    do(session, plain, "dispatch", t, departments=[f"{place['town']}-CG"])
    assert plain.handle_due_at == t + timedelta(hours=8)  # the category beats the low-priority default
    slow = new_item(session, place, "event", t, category="EV-01-03", priority="low")
    do(session, slow, "accept", t)
    do(session, slow, "register", t)
    do(session, slow, "dispatch", t, departments=[f"{place['town']}-CG"])
    # Low priority: 5 working days: 02-14 (adjusted Saturday), 02-24, 25, 26, 27.
    assert slow.handle_due_at == eod(2026, 2, 27)


# --------------------------------------------------------------------------- working days

START = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31, 23, 59),
                     timezones=st.just(UTC))
HANDLE_RULES = [(r["kind"], r["category"], r["priority"]) for r in seeded_rules() if r["step"] == "handle"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=START, rule=st.sampled_from(HANDLE_RULES), days=st.integers(1, 30))
def test_day_based_deadlines_end_on_a_working_day(city_db: Database, start: datetime,
                                                  rule: tuple[str, str | None, str | None], days: int) -> None:
    kind, category, priority = rule
    with city_db.session(write=False) as s:
        d = config.sla_table(s).duration(kind, category, priority, "handle")
        due = config.deadline(s, start, kind, category, priority, "handle")
        cal = config.calendar(s)
    assert d is not None and due is not None
    if not d.is_day_based:
        assert due == start + (timedelta(hours=d.amount) if d.unit == "hours" else timedelta(minutes=d.amount))
        return
    local = due.astimezone(LOCAL_TZ)
    assert local.time() == time.max
    assert is_working(local.date()), f"{d} from {start} ends on {local.date()}"
    first = start.astimezone(LOCAL_TZ).date()
    if d.unit == "working_days":
        assert cal.working_days_between(start, due) == d.amount
        assert sum(is_working(first + timedelta(days=i)) for i in range(1, (local.date() - first).days + 1)) \
            == d.amount
    else:
        target = first + timedelta(days=d.amount)
        assert local.date() >= target
        assert all(not is_working(target + timedelta(days=i)) for i in range((local.date() - target).days))
    # An extension by calendar days 自然日 lands on a working day too.
    extended = cal.add(due, Duration(days, "days")).astimezone(LOCAL_TZ)
    assert is_working(extended.date()) and extended.time() == time.max


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=START, kind=st.sampled_from(["hotline", "petition"]), priority=st.sampled_from(["low", "normal"]))
def test_handle_deadline_of_a_dispatched_item_is_a_working_day(city_db: Database, place: dict[str, str],
                                                               start: datetime, kind: str, priority: str) -> None:
    s = city_db.session(write=True)
    try:
        item = new_item(s, place, kind, start, priority=priority)
        do(s, item, "accept", start)
        do(s, item, "register", start)
        do(s, item, "dispatch", start, departments=[f"{place['town']}-GA"])
        assert item.handle_due_at is not None
        local = item.handle_due_at.astimezone(LOCAL_TZ)
        assert local.time() == time.max and is_working(local.date())
        if kind == "petition":
            assert item.due_at == item.handle_due_at
    finally:
        s.rollback()
        s.close()


# --------------------------------------------------------------------------- escalation 上报上级


def test_escalation_path_town_district_city(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    item = new_item(session, place, "hotline", t)
    assert item.unit_code == place["village"]
    assert (item.owner_code, item.escalation_level) == (place["town"], 0)  # a village's item belongs to its town
    for level, owner in ((1, place["district"]), (2, place["city"])):
        later = t + timedelta(hours=level)
        parent = service.escalate(session, SYSTEM, item, later, reason="重大")
        assert parent.code == owner
        assert (item.owner_code, item.escalation_level, item.sla_state) == (owner, level, "ok")
        assert item.owner_path.endswith(f"/{owner}/")
        assert item.due_at == later + timedelta(minutes=30)  # the step deadline restarts for the new owner
        session.flush()
        (n,) = [n for n in notes(session, item, "escalated") if n.unit_code == owner]
        assert "重大" in n.message
    with pytest.raises(Conflict) as exc:
        service.escalate(session, SYSTEM, item, t + timedelta(hours=3), reason="重大")
    assert exc.value.code == "top_level"
    assert (item.owner_code, item.escalation_level) == (place["city"], 2)


def test_escalate_action_records_the_path(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    item = new_item(session, place, "hotline", t, unit=place["town"])
    item_owner = item.owner_code
    assert item_owner == place["town"]  # located at the town itself
    do(session, item, "escalate", t, note="跨镇纠纷")
    entry = service.timeline(session, SYSTEM, item.id)[-1]
    assert (entry.action, entry.note, entry.data) == ("escalate", "跨镇纠纷",
                                                      {"from_owner": place["town"], "to_owner": place["district"]})
    do(session, item, "escalate", t, note="跨区纠纷")
    with pytest.raises(Conflict) as exc:
        do(session, item, "escalate", t, note="再上报")
    assert exc.value.code == "top_level"
    assert item.escalation_level == 2
    district_item = new_item(session, place, "hotline", t, unit=place["district"])
    assert district_item.owner_code == place["district"]
    do(session, district_item, "escalate", t, note="上报")
    with pytest.raises(Conflict):
        do(session, district_item, "escalate", t, note="上报")
    assert (district_item.owner_code, district_item.escalation_level) == (place["city"], 1)


# --------------------------------------------------------------------------- the SLA tick 时限巡检


def refreshed(session: Session, *objs: Any) -> None:
    """The tick updates some rows in bulk: read them again."""
    session.flush()
    for o in objs:
        session.refresh(o)


def auto_escalations(session: Session, item: WorkItem) -> list[TimelineEntry]:
    return [e for e in service.timeline(session, SYSTEM, item.id) if e.action == "escalate" and e.data.get("auto")]


def test_tick_escalates_overdue_items_one_level_per_tick(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    item = new_item(session, place, "hotline", t)  # accept within 30 minutes
    calm = new_item(session, place, "petition", t)  # accept within 15 days
    assert item.due_at == t + timedelta(minutes=30)
    version = item.version
    r1 = sla_tick(session, t + timedelta(hours=1))
    refreshed(session, item, calm)
    assert (r1.overdue, r1.escalated) == ([item.id], [item.id])
    assert (item.owner_code, item.escalation_level, item.overdue_steps) == (place["district"], 1, 1)
    assert item.sla_state == "ok" and item.due_at == t + timedelta(hours=1, minutes=30)
    assert item.version > version  # the ETag changes
    assert [n.unit_code for n in notes(session, item, "overdue")] == [place["town"]]
    assert [n.unit_code for n in notes(session, item, "escalated")] == [place["district"]]
    (entry,) = auto_escalations(session, item)
    assert entry.data == {"from_owner": place["town"], "to_owner": place["district"], "auto": True}
    assert (entry.from_status, entry.to_status, entry.role) == ("reported", "reported", "system")
    audited = [e for e in session.info.get("audit_pending", []) if e.action == "item.escalate"]
    assert [e.object_id for e in audited] == [str(item.id)]
    assert (calm.owner_code, calm.escalation_level, calm.sla_state) == (place["town"], 0, "ok")

    # The same tick again changes nothing.
    again = sla_tick(session, t + timedelta(hours=1))
    refreshed(session, item)
    assert (again.overdue, again.escalated) == ([], [])
    assert (item.escalation_level, item.overdue_steps, len(auto_escalations(session, item))) == (1, 1, 1)
    assert len(notes(session, item, "escalated")) == 1 and len(notes(session, item, "overdue")) == 1

    # A second overdue tick: one more level (district -> city).
    r2 = sla_tick(session, t + timedelta(hours=2))
    refreshed(session, item)
    assert r2.escalated == [item.id]
    assert (item.owner_code, item.escalation_level, item.overdue_steps) == (place["city"], 2, 2)
    assert [n.unit_code for n in notes(session, item, "escalated")] == [place["district"], place["city"]]
    assert len(auto_escalations(session, item)) == 2

    # At the top it stays overdue, notified once, and is not picked up again.
    r3 = sla_tick(session, t + timedelta(hours=3))
    refreshed(session, item)
    assert (r3.overdue, r3.escalated) == ([item.id], [])
    assert (item.owner_code, item.escalation_level, item.sla_state) == (place["city"], 2, "overdue")
    assert [n.unit_code for n in notes(session, item, "overdue")] == [place["town"], place["district"], place["city"]]
    r4 = sla_tick(session, t + timedelta(hours=4))
    assert (r4.overdue, r4.escalated) == ([], [])
    assert len(notes(session, item, "overdue")) == 3
    # Acting on the item starts a fresh step with a fresh deadline.
    do(session, item, "accept", t + timedelta(hours=5))
    assert (item.sla_state, item.due_at) == ("ok", t + timedelta(hours=7))


def test_tick_respects_max_escalations(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    first = new_item(session, place, "hotline", t)
    second = new_item(session, place, "hotline", t + timedelta(minutes=1))
    report = sla_tick(session, t + timedelta(hours=1), max_escalations=1)
    refreshed(session, first, second)
    assert report.overdue == [first.id, second.id]  # most overdue first
    assert report.escalated == [first.id]
    assert (first.escalation_level, first.owner_code) == (1, place["district"])
    assert (second.escalation_level, second.owner_code) == (0, place["town"])
    assert len(notes(session, second, "overdue")) == 1 and notes(session, second, "escalated") == []


def test_tick_marks_items_due_soon_once(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    soon = new_item(session, place, "hotline", t)  # due in 30 minutes
    later = new_item(session, place, "hotline", t)
    do(session, later, "accept", t)
    do(session, later, "register", t)
    do(session, later, "dispatch", t, departments=[f"{place['town']}-CG"])
    do(session, later, "acknowledge", t, departments=[f"{place['town']}-CG"])  # handle within 5 working days
    report = sla_tick(session, t)
    refreshed(session, soon, later)
    assert report.due_soon == [soon.id]
    assert (soon.sla_state, later.sla_state) == ("due_soon", "ok")
    assert len(notes(session, soon, "due_soon")) == 1 and notes(session, soon, "due_soon")[0].unit_code == place["town"]
    assert sla_tick(session, t + timedelta(minutes=5)).due_soon == []
    assert len(notes(session, soon, "due_soon")) == 1
    # A due-soon item that runs out is still caught as overdue.
    assert soon.due_at == t + timedelta(minutes=30)
    report = sla_tick(session, t + timedelta(minutes=30, seconds=1))
    assert (report.overdue, report.escalated) == ([soon.id], [soon.id])
    # "Soon" is strictly less than 4 hours ahead.
    probe = new_item(session, place, "petition", t)
    assert probe.due_at == eod(2025, 11, 4)
    assert probe.id not in sla_tick(session, probe.due_at - timedelta(hours=4, seconds=1)).due_soon
    assert probe.id not in sla_tick(session, probe.due_at - timedelta(hours=4)).due_soon
    assert probe.id in sla_tick(session, probe.due_at - timedelta(hours=4) + timedelta(seconds=1)).due_soon


def test_tick_marks_supervision_orders_overdue(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 9, 26, 10)  # Friday
    item = new_item(session, place, "petition", t)
    sup = service.supervise(session, SYSTEM, item.id, note="请加快办理", days=2, now=t)
    assert sup.due_at == eod(2025, 9, 29)  # 2 working days: Sunday 09-28 (adjusted) and Monday 09-29
    assert item.supervised
    assert [n.unit_code for n in notes(session, item, "supervision")] == [place["town"]]
    done = service.supervise(session, SYSTEM, item.id, note="另一督办", days=1, now=t)
    service.resolve_supervision(session, SYSTEM, item.id, done.id)
    assert sla_tick(session, eod(2025, 9, 29)).supervision_overdue == []
    report = sla_tick(session, eod(2025, 9, 29) + timedelta(microseconds=1))
    assert report.supervision_overdue == [sup.id]
    refreshed(session, sup, done)
    assert (sup.state, done.state) == ("overdue", "resolved")
    assert sla_tick(session, at(2025, 10, 10)).supervision_overdue == []
    states = session.execute(select(Supervision.state).where(Supervision.item_id == item.id)
                             .order_by(Supervision.id)).scalars().all()
    assert states == ["overdue", "resolved"]


def test_tick_flags_whistle_departments_that_never_reported_in(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    item = new_item(session, place, "hotline", t)
    do(session, item, "accept", t)
    do(session, item, "register", t)
    ga, cg, sf = (f"{place['town']}-{x}" for x in ("GA", "CG", "SF"))
    do(session, item, "whistle", t, departments=[ga, cg, sf], note="联合处置")
    assert item.whistle
    rows = {a.department_code: a for a in service.assignments_of(session, item.id)}
    assert {a.mode for a in rows.values()} == {"whistle"}
    assert {a.ack_due_at for a in rows.values()} == {t + timedelta(hours=2)}
    do(session, item, "acknowledge", t + timedelta(hours=1), departments=[ga])
    # Nobody is late before the deadline.
    sla_tick(session, t + timedelta(hours=1, minutes=30))
    refreshed(session, *rows.values())
    assert not any(a.ack_overdue for a in rows.values())
    assert notes(session, item, "ack_overdue") == []
    # SF reports in late but before the tick: it is not flagged either.
    do(session, item, "acknowledge", t + timedelta(hours=2, minutes=10), departments=[sf])
    assert rows[sf].acknowledged_at == t + timedelta(hours=2, minutes=10)
    sla_tick(session, t + timedelta(hours=3))
    refreshed(session, item, *rows.values())
    assert {c: a.ack_overdue for c, a in rows.items()} == {ga: False, cg: True, sf: False}
    (n,) = notes(session, item, "ack_overdue")
    assert n.unit_code == item.owner_code and cg in n.message
    for hours in (3, 4, 30):
        sla_tick(session, t + timedelta(hours=hours))
    assert len(notes(session, item, "ack_overdue")) == 1
    assert notes(session, item, "whistle") and {x.unit_code for x in notes(session, item, "whistle")} == {ga, cg, sf}


def test_tick_ignores_finished_items(session: Session, place: dict[str, str]) -> None:
    t = at(2025, 10, 20, 9)
    item = new_item(session, place, "hotline", t)
    do(session, item, "reject", t, note="不属于受理范围")
    assert (item.status, item.due_at) == ("rejected", None)
    merged = new_item(session, place, "hotline", t)
    target = new_item(session, place, "hotline", t + timedelta(hours=5))
    do(session, merged, "merge", t, target=target.id)
    report = sla_tick(session, t + timedelta(days=30))
    assert item.id not in report.overdue and merged.id not in report.overdue
    assert target.id in report.overdue
    n = session.execute(select(func.count()).select_from(Notification).where(
        Notification.item_id.in_([item.id, merged.id]), Notification.kind.in_(["overdue", "escalated"]))).scalar_one()
    assert n == 0


def test_redispatched_department_is_flagged_again_when_late_again(session: Session, place: dict[str, str]) -> None:
    """A new dispatch is a new report-in deadline: the old 报到超时 flag must not hide the new one."""
    t = at(2025, 10, 20, 9)
    cg = f"{place['town']}-CG"
    item = new_item(session, place, "hotline", t)
    do(session, item, "accept", t)
    do(session, item, "register", t)
    do(session, item, "dispatch", t, departments=[cg])
    sla_tick(session, t + timedelta(hours=3))
    (a,) = service.assignments_of(session, item.id)
    refreshed(session, a)
    assert a.ack_overdue and len(notes(session, item, "ack_overdue")) == 1
    do(session, item, "return", t + timedelta(hours=4), departments=[cg], note="不属于本部门职责")
    assert item.status == "registered"
    do(session, item, "dispatch", t + timedelta(hours=5), departments=[cg])
    refreshed(session, a)
    assert (a.state, a.ack_due_at, a.ack_overdue) == ("assigned", t + timedelta(hours=7), False)
    sla_tick(session, t + timedelta(hours=8))
    refreshed(session, a)
    assert a.ack_overdue and len(notes(session, item, "ack_overdue")) == 2


@pytest.mark.parametrize("state", ["accepted", "registered"])
def test_extending_before_dispatch_never_shortens_the_handling_deadline(session: Session, place: dict[str, str],
                                                                       state: str) -> None:
    t = at(2025, 10, 17, 10)  # Friday: 5 working days end on Friday 10-24
    item = new_item(session, place, "hotline", t)
    do(session, item, "accept", t)
    if state == "registered":
        do(session, item, "register", t)
    do(session, item, "extend", t, days=1, note="需现场勘查")
    assert item.handle_due_at is not None and item.handle_due_at >= eod(2025, 10, 24)
    assert item.handle_due_at == eod(2025, 10, 27)  # 5 working days, then 1 calendar day (Sat 10-25) rolled
    if state == "accepted":
        do(session, item, "register", t + timedelta(minutes=30))
    do(session, item, "dispatch", t + timedelta(hours=1), departments=[f"{place['town']}-CG"])
    assert item.handle_due_at == eod(2025, 10, 27)
