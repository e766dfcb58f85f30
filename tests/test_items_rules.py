"""The law of work items 工单规则: the transition table on its own, then the real service driven
by hypothesis through random action sequences on a real database, checking that no sequence
reaches a state the table forbids and that a refused action changes nothing."""

from __future__ import annotations

import itertools
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shiyu.demo.city import DemoCity
from shiyu.domains.items import config, rules, service
from shiyu.domains.items.models import Assignment, TimelineEntry, WorkItem
from shiyu.domains.items.schemas import ActionIn, DisputeIn, ItemCreate, PartyIn, PersonIn, PetitionIn
from shiyu.kit.db import Database
from shiyu.kit.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, PreconditionFailed
from shiyu.platform.audit import service as audit
from shiyu.platform.authz.principal import Principal

SYSTEM = Principal.system("rules-test")
T0 = datetime(2025, 11, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Asia/Shanghai
ASSIGNMENT_STATES = ("assigned", "acknowledged", "reported", "returned", "done")

# --------------------------------------------------------------------------- the table alone


def outcomes(action: str, state: str) -> frozenset[str]:
    """Every state ``action`` may lead to from ``state``: the table's target, or, where the
    table says None, the outcomes the service decides (modelled here explicitly)."""
    t = rules.TRANSITIONS[action]
    if state not in t.sources:
        return frozenset()
    if t.target is not None:
        return frozenset({t.target})
    if action in ("dispatch", "whistle"):
        return frozenset({"dispatched"}) if state == "registered" else frozenset({state})
    if action == "feedback":
        return frozenset({"handling", "feedback"})
    if action == "return":
        return frozenset({"registered", "dispatched", "handling", "feedback"})
    if action == "verify":
        return frozenset({"verified", "handling"})
    return frozenset({state})  # handle, extend, escalate, reply keep the state


PAIRS = list(itertools.product(rules.ACTIONS, rules.STATES))


def test_table_is_complete_and_consistent() -> None:
    assert set(rules.TRANSITIONS) == set(rules.ACTIONS)
    assert set(rules.PERMISSION) == set(rules.ACTIONS)
    assert rules.DEPARTMENT_ACTIONS <= set(rules.ACTIONS)
    assert set(service._HANDLERS) == set(rules.ACTIONS)
    assert set(rules.STATE_LABELS) == set(rules.STATES)
    assert rules.OPEN_STATES <= set(rules.STATES) and rules.TERMINAL_STATES <= set(rules.STATES)
    assert not rules.OPEN_STATES & rules.TERMINAL_STATES
    assert set(rules.STATES) == rules.OPEN_STATES | rules.TERMINAL_STATES | {"closed"}
    for action, t in rules.TRANSITIONS.items():
        assert t.action == action
        assert t.sources and t.sources <= set(rules.STATES), action
        assert t.target is None or t.target in rules.STATES, action
    # Department actions are exactly the item.handle ones; the rest belong to the owning centre.
    assert {a for a, p in rules.PERMISSION.items() if p == "item.handle"} == rules.DEPARTMENT_ACTIONS
    # Reason-required actions: rejecting, returning, reopening, extending and escalating.
    assert {a for a, t in rules.TRANSITIONS.items() if t.needs_reason} == {
        "reject", "return", "reopen", "extend", "escalate"}


@pytest.mark.parametrize(("action", "state"), PAIRS)
def test_allowed_and_why_not_match_the_table(action: str, state: str) -> None:
    expected = state in rules.TRANSITIONS[action].sources
    assert rules.allowed(action, state) is expected
    reason = rules.why_not(action, state)
    if expected:
        assert reason is None
        assert action in rules.actions_in(state)
        assert outcomes(action, state) <= set(rules.STATES)
    else:
        assert reason is not None and action in reason and state in reason
        assert action not in rules.actions_in(state)
        assert outcomes(action, state) == frozenset()


def test_unknown_action_is_never_allowed() -> None:
    for state in rules.STATES:
        assert rules.allowed("teleport", state) is False
        assert rules.why_not("teleport", state) == "unknown action teleport"
    assert rules.allowed("accept", "no-such-state") is False


def test_actions_in_keeps_the_canonical_order() -> None:
    for state in rules.STATES:
        got = rules.actions_in(state)
        assert got == [a for a in rules.ACTIONS if rules.allowed(a, state)]


def _graph() -> dict[str, set[str]]:
    return {s: {n for a in rules.ACTIONS for n in outcomes(a, s)} for s in rules.STATES}


def test_every_state_is_reachable_from_reported() -> None:
    graph = _graph()
    seen, todo = {"reported"}, deque(["reported"])
    while todo:
        for n in graph[todo.popleft()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert seen == set(rules.STATES)


def test_the_happy_path_is_a_path_in_the_table() -> None:
    state = "reported"
    for action, expected in [("accept", "accepted"), ("register", "registered"), ("dispatch", "dispatched"),
                             ("acknowledge", "handling"), ("handle", "handling"), ("feedback", "feedback"),
                             ("verify", "verified"), ("close", "closed"), ("rate", "rated")]:
        assert expected in outcomes(action, state), (action, state)
        state = expected


def test_every_open_state_can_still_end() -> None:
    """From every open state some path reaches closed, rejected or merged."""
    graph = _graph()
    for start in rules.OPEN_STATES:
        seen, todo = {start}, deque([start])
        while todo:
            for n in graph[todo.popleft()]:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        assert seen & {"closed", "rejected", "merged"}, start


@pytest.mark.parametrize("state", sorted(rules.TERMINAL_STATES | {"closed"}))
def test_terminal_states_only_allow_a_reply(state: str) -> None:
    """Terminal (and closed) states have no way out but a reply 答复, and reopening 重新办理 a
    closed item, or a rated one (the service lets that through only after a poor rating)."""
    exits = set(rules.actions_in(state)) - {"reply"}
    if state in ("closed", "rated"):
        assert exits == {"reopen"} | ({"rate"} if state == "closed" else set())
        assert outcomes("reopen", state) == {"registered"}
    else:
        assert exits == set()
    assert rules.sla_step(state) is None
    assert rules.allowed("reply", state) is (state != "merged")
    assert outcomes("reply", state) <= {state}


def test_sla_steps() -> None:
    assert {s: rules.sla_step(s) for s in rules.STATES} == {
        "reported": "accept", "accepted": "dispatch", "registered": "dispatch", "dispatched": "acknowledge",
        "handling": "handle", "feedback": "verify", "verified": None, "closed": None, "rated": None,
        "rejected": None, "merged": None}


def test_limits() -> None:
    assert rules.MAX_EXTENSIONS["petition"] == 1
    assert set(rules.MAX_EXTENSIONS) == set(rules.KINDS)
    assert rules.PETITION_MAX_EXTENSION_DAYS == 30
    assert [rules.priority_rank(p) for p in rules.PRIORITIES] == [0, 1, 2, 3]
    assert rules.priority_rank("bogus") == rules.priority_rank("normal")


assignment_lists = st.lists(st.sampled_from(ASSIGNMENT_STATES), max_size=8)


@given(assignment_lists, st.randoms(use_true_random=False))
def test_next_state_after_feedback(states: list[str], rnd: Any) -> None:
    got = rules.next_state_after_feedback(states)
    active = [s for s in states if s not in rules.INACTIVE_ASSIGNMENTS]
    assert got in ("feedback", "handling")
    assert (got == "feedback") == (bool(active) and set(active) == {"reported"})
    shuffled = list(states)
    rnd.shuffle(shuffled)
    assert rules.next_state_after_feedback(shuffled) == got
    assert rules.next_state_after_feedback(states + ["returned"]) == got


@given(assignment_lists, st.randoms(use_true_random=False))
def test_next_state_after_return(states: list[str], rnd: Any) -> None:
    got = rules.next_state_after_return(states)
    active = [s for s in states if s not in rules.INACTIVE_ASSIGNMENTS]
    assert got in outcomes("return", "handling")
    if not active:
        assert got == "registered"
    elif set(active) == {"reported"}:
        assert got == "feedback"
        assert rules.next_state_after_feedback(states) == "feedback"
    elif set(active) == {"assigned"}:
        assert got == "dispatched"
    else:
        assert got == "handling"
    shuffled = list(states)
    rnd.shuffle(shuffled)
    assert rules.next_state_after_return(shuffled) == got
    assert rules.next_state_after_return(states + ["returned"]) == got


@given(st.sampled_from(rules.STATES), st.none() | st.integers(1, 5), st.booleans())
def test_can_reopen(state: str, rating: int | None, verify_failed: bool) -> None:
    got = rules.can_reopen(state, rating, verify_failed)
    if state == "closed":
        assert got
    elif state == "rated":
        assert got == (rating is not None and rating <= rules.POOR_RATING)
    else:
        assert not got
    # Only a state the table lets reopen can ever be reopened.
    assert not got or rules.allowed("reopen", state)


# --------------------------------------------------------------------------- a real database


_keys = itertools.count()


def _place(city: DemoCity, i: int) -> tuple[str, str]:
    """(village code, its town code) of the i-th village (cycling)."""
    villages = city.units_of_kind("village")
    v = villages[i % len(villages)]
    assert v.parent_code is not None
    return v.code, v.parent_code


def new_item(session: Session, city: DemoCity, kind: str, *, village: int = 0, priority: str = "normal",
             now: datetime = T0) -> WorkItem:
    code, _town = _place(city, village)
    common: dict[str, Any] = {"kind": kind, "title": f"测试{rules.KIND_LABELS[kind]}", "priority": priority}
    if kind == "event":
        grid = next(g for g in city.grids if g.village_code == code)
        pt = grid.polygon.representative_point()
        body = ItemCreate(**common, category="EV-01-01", lon=pt.x, lat=pt.y)
    elif kind == "dispute":
        body = ItemCreate(**common, unit=code, category="DS-01", dispute=DisputeIn(),
                          parties=[PartyIn(name="王五", role="applicant"), PartyIn(name="赵六", role="respondent")])
    elif kind == "petition":
        body = ItemCreate(**common, unit=code, source="letter", reporter=PersonIn(name="李四"),
                          petition=PetitionIn(channel="letter", matter="拖欠工资"))
    else:
        body = ItemCreate(**common, unit=code, source="hotline", reporter=PersonIn(name="张三"))
    created = service.create_item(session, SYSTEM, body, idempotency_key=f"rules-{next(_keys)}", now=now)
    assert not created.replayed
    return created.item


def do(session: Session, item: WorkItem, action: str, now: datetime = T0, **kw: Any) -> WorkItem:
    return service.act(session, SYSTEM, item.id, action, ActionIn(**kw), if_match=service.etag(item), now=now)


def timeline_len(session: Session, item_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(TimelineEntry)
                               .where(TimelineEntry.item_id == item_id)).scalar_one())


def pending_audit(session: Session) -> int:
    return len(session.info.get("audit_pending", []))


def audit_total(session: Session) -> int:
    """Audit entries in the chain plus those waiting for the commit."""
    return audit.count(session) + pending_audit(session)


def test_stale_etag_is_412_and_missing_if_match_is_428(session: Session, demo_city: DemoCity) -> None:
    item = new_item(session, demo_city, "hotline")
    old = service.etag(item)
    do(session, item, "accept")
    assert service.etag(item) != old
    with pytest.raises(PreconditionFailed) as e412:
        service.act(session, SYSTEM, item.id, "register", ActionIn(), if_match=old)
    assert e412.value.status == 412 and e412.value.field == "If-Match"
    for missing in (None, ""):
        with pytest.raises(service.PreconditionRequired) as e428:
            service.act(session, SYSTEM, item.id, "register", ActionIn(), if_match=missing)
        assert e428.value.status == 428 and e428.value.field == "If-Match"
    assert item.status == "accepted"
    # A list of tags, the bare tag and "*" all match.
    service.act(session, SYSTEM, item.id, "register", ActionIn(), if_match=f'"x", {service.etag(item)}')
    assert item.status == "registered"
    service.act(session, SYSTEM, item.id, "escalate", ActionIn(note="重大"), if_match=service.etag(item).strip('"'))
    service.act(session, SYSTEM, item.id, "escalate", ActionIn(note="重大"), if_match="*")
    assert item.escalation_level == 2


def test_unknown_action_is_404(session: Session, demo_city: DemoCity) -> None:
    item = new_item(session, demo_city, "hotline")
    with pytest.raises(NotFound) as exc:
        service.act(session, SYSTEM, item.id, "teleport", ActionIn(), if_match=service.etag(item))
    assert exc.value.status == 404 and exc.value.code == "unknown_action" and exc.value.field == "action"
    with pytest.raises(NotFound):
        service.act(session, SYSTEM, 10**9, "accept", ActionIn(), if_match="*")


def _to(session: Session, city: DemoCity, state: str) -> WorkItem:
    """A hotline item driven through the service to ``state``."""
    item = new_item(session, city, "hotline")
    _, town = _place(city, 0)
    path = {"reported": [], "accepted": ["accept"], "registered": ["accept", "register"],
            "dispatched": ["accept", "register", "dispatch"], "closed": ["accept", "register", "dispatch",
                                                                        "acknowledge", "feedback", "verify", "close"]}
    for action in path[state]:
        kw: dict[str, Any] = {}
        if action in ("dispatch", "acknowledge", "feedback"):
            kw["departments"] = [f"{town}-CG"]
        if action == "feedback":
            kw["note"] = "已处理"
        if action == "verify":
            kw["passed"] = True
        do(session, item, action, **kw)
    assert item.status == state
    return item


@pytest.mark.parametrize(("action", "state"), [
    ("reject", "reported"), ("reject", "accepted"), ("return", "dispatched"), ("reopen", "closed"),
    ("extend", "accepted"), ("escalate", "reported"), ("escalate", "dispatched"),
])
@pytest.mark.parametrize("note", [None, "", "   "])
def test_reason_required(session: Session, demo_city: DemoCity, action: str, state: str, note: str | None) -> None:
    item = _to(session, demo_city, state)
    _, town = _place(demo_city, 0)
    before = (item.status, item.version, timeline_len(session, item.id), pending_audit(session))
    with pytest.raises(Invalid) as exc:
        do(session, item, action, note=note, days=5, departments=[f"{town}-CG"])
    assert exc.value.status == 422 and exc.value.field == "note" and exc.value.code == "reason_required"
    assert (item.status, item.version, timeline_len(session, item.id), pending_audit(session)) == before
    # With a reason the same action goes through.
    do(session, item, action, note="理由", days=5, departments=[f"{town}-CG"])
    assert item.status in outcomes(action, state)


@pytest.mark.parametrize("action", ["handle", "feedback"])
def test_department_report_needs_a_note(session: Session, demo_city: DemoCity, action: str) -> None:
    item = _to(session, demo_city, "dispatched")
    _, town = _place(demo_city, 0)
    do(session, item, "acknowledge", departments=[f"{town}-CG"])
    with pytest.raises(Invalid) as exc:
        do(session, item, action, departments=[f"{town}-CG"], note=" ")
    assert exc.value.field == "note"


def test_forbidden_transition_is_409_and_changes_nothing(session: Session, demo_city: DemoCity) -> None:
    item = _to(session, demo_city, "registered")
    for action in rules.ACTIONS:
        if rules.allowed(action, "registered"):
            continue
        before = (item.status, item.version, timeline_len(session, item.id), pending_audit(session))
        with pytest.raises(Conflict) as exc:
            do(session, item, action, note="理由", days=1, rating=1, passed=True, target=item.id)
        assert exc.value.status == 409 and exc.value.code == "transition_not_allowed"
        assert {k: exc.value.params[k] for k in ("action", "status")} == {"action": action, "status": "registered"}
        assert (item.status, item.version, timeline_len(session, item.id), pending_audit(session)) == before


def _built(session: Session, city: DemoCity, state: str) -> tuple[WorkItem, WorkItem, str]:
    """A hotline item in ``state`` with two departments (CG, GA) on it once dispatched, and
    an open sibling to merge into. In handling CG has reported in 报到 and GA not yet; in
    feedback both reported back."""
    item = new_item(session, city, "hotline")
    sibling = new_item(session, city, "hotline")
    _, town = _place(city, 0)
    cg, ga = f"{town}-CG", f"{town}-GA"
    steps: list[tuple[str, dict[str, Any]]] = {
        "rejected": [("reject", {"note": "不属于受理范围"})],
        "merged": [("merge", {"target": sibling.id})],
    }.get(state, [])
    if not steps:
        path = [("accept", {}), ("register", {}), ("dispatch", {"departments": [cg, ga]}),
                ("acknowledge", {"departments": [cg]}), ("acknowledge", {"departments": [ga]}),
                ("feedback", {"departments": [cg], "note": "已处理"}),
                ("feedback", {"departments": [ga], "note": "已处理"}), ("verify", {"passed": True}),
                ("close", {}), ("rate", {"rating": 1})]
        stop = {"reported": 0, "accepted": 1, "registered": 2, "dispatched": 3, "handling": 4, "feedback": 7,
                "verified": 8, "closed": 9, "rated": 10}[state]
        steps = path[:stop]
    for action, kw in steps:
        do(session, item, action, **kw)
    assert item.status == state
    return item, sibling, town


#: Where the service decides (target None in the table), what it decides for ``_built`` items.
DECIDED = {("dispatch", "registered"): "dispatched", ("whistle", "registered"): "dispatched",
           ("return", "handling"): "dispatched", ("verify", "feedback"): "verified"}


@pytest.mark.parametrize("state", rules.STATES)
def test_every_pair_through_the_service(session: Session, demo_city: DemoCity, state: str) -> None:
    """Each action in each state through ``service.act``: 409 and no change where the table
    forbids it, the table's (or the modelled) outcome where it allows it."""
    item, sibling, town = _built(session, demo_city, state)
    item_id = item.id
    bodies: dict[str, dict[str, Any]] = {
        "dispatch": {"departments": [f"{town}-SF"]},
        "whistle": {"departments": [f"{town}-SF", f"{town}-GA"]},
        "acknowledge": {"departments": [f"{town}-CG" if state == "dispatched" else f"{town}-GA"]},
        "handle": {"departments": [f"{town}-CG"], "note": "现场处置"},
        "feedback": {"departments": [f"{town}-CG"], "note": "已处理"},
        "return": {"departments": [f"{town}-CG"], "note": "不属于本部门"},
        "verify": {"passed": True}, "rate": {"rating": 4}, "reply": {"reply": "已答复"},
        "merge": {"target": sibling.id}, "extend": {"days": 3, "note": "延期"},
    }
    for action in rules.ACTIONS:
        body = bodies.get(action, {"note": "理由"})
        if not rules.allowed(action, state):
            before = (item.status, item.version, timeline_len(session, item.id), pending_audit(session))
            with pytest.raises(Conflict) as exc:
                do(session, item, action, **body)
            assert exc.value.code == "transition_not_allowed"
            assert (item.status, item.version, timeline_len(session, item.id), pending_audit(session)) == before
            continue
        nested = session.begin_nested()
        n = timeline_len(session, item.id)
        do(session, item, action, **body)
        expected = rules.TRANSITIONS[action].target or DECIDED.get((action, state), state)
        assert item.status == expected, (action, state)
        assert expected in outcomes(action, state)
        entry = service.timeline(session, SYSTEM, item.id)[-1]
        assert (entry.action, entry.from_status, entry.to_status) == (action, state, expected)
        assert timeline_len(session, item.id) == n + 1
        nested.rollback()
        session.expunge_all()  # start the next action from what the database holds
        item = session.get(WorkItem, item_id)
        assert item is not None and item.status == state


def test_service_decided_outcomes(session: Session, demo_city: DemoCity) -> None:
    item, _, town = _built(session, demo_city, "handling")
    cg, ga = f"{town}-CG", f"{town}-GA"
    do(session, item, "acknowledge", departments=[ga])
    do(session, item, "feedback", departments=[cg], note="已处理")
    assert item.status == "handling"  # GA has not reported back yet
    do(session, item, "feedback", departments=[ga], note="已处理")
    assert item.status == "feedback"  # the last one moves the item on
    do(session, item, "verify", passed=False, note="未处理到位")
    assert item.status == "handling"
    assert {a.state for a in service.assignments_of(session, item.id)} == {"acknowledged"}
    do(session, item, "feedback", departments=[cg], note="已整改")
    do(session, item, "return", departments=[ga], note="非本部门")
    assert item.status == "feedback"  # everyone left on it has reported back
    returned = new_item(session, demo_city, "hotline")
    for action, kw in [("accept", {}), ("register", {}), ("dispatch", {"departments": [cg]})]:
        do(session, returned, action, **kw)
    do(session, returned, "return", departments=[cg], note="非本部门")
    assert returned.status == "registered"  # nobody left: back to the centre
    with pytest.raises(Invalid) as exc:
        do(session, returned, "whistle", departments=[cg])
    assert exc.value.code == "whistle_needs_two"
    do(session, returned, "whistle", departments=[cg, ga])
    assert returned.status == "dispatched" and returned.whistle
    assert {a.state for a in service.assignments_of(session, returned.id)} == {"assigned"}


# --------------------------------------------------------------------------- random action sequences

#: The action that moves an item on along the happy path, by state (drawn most often).
FORWARD = {"reported": "accept", "accepted": "register", "registered": "dispatch", "dispatched": "acknowledge",
           "handling": "feedback", "feedback": "verify", "verified": "close", "closed": "rate", "rated": "reopen",
           "rejected": "reply", "merged": "reply"}
NOTE = "处理情况说明"


def mostly(good: Any, *others: Any) -> st.SearchStrategy[Any]:
    """``good`` four times in five; shrinks towards it."""
    return st.integers(0, 4).flatmap(lambda i: st.just(good) if i < 4 else st.sampled_from(others))


class ItemLifecycle(RuleBasedStateMachine):
    """One item (and a sibling to merge into) per example, driven by random actions with
    the current ETag through ``service.act``; the example's transaction is rolled back."""

    database: Database
    city: DemoCity

    def __init__(self) -> None:
        super().__init__()
        self.session = self.database.session(write=True)
        self.clock = T0
        self.ok = 0
        self.item_id = 0
        self.sibling_id = 0
        self.audit_start = 0
        self.town = ""
        self.depts: list[str] = []

    @property
    def item(self) -> WorkItem:
        item = self.session.get(WorkItem, self.item_id)
        assert item is not None
        return item

    def assignments(self) -> list[Assignment]:
        return service.assignments_of(self.session, self.item_id)

    @initialize(kind=st.sampled_from(rules.KINDS), village=st.integers(0, 40),
                priority=st.sampled_from(rules.PRIORITIES))
    def create(self, kind: str, village: int, priority: str) -> None:
        item = new_item(self.session, self.city, kind, village=village, priority=priority, now=self.clock)
        sibling = new_item(self.session, self.city, kind, village=village, now=self.clock)
        self.item_id, self.sibling_id = item.id, sibling.id
        audit.append_entries(self.session, self.session.info.pop("audit_pending", []))
        self.audit_start = audit.count(self.session)
        _, self.town = _place(self.city, village)
        district = next(u.parent_code for u in self.city.units if u.code == self.town)
        other_town = next(u.code for u in self.city.units_of_kind("town") if u.parent_code != district)
        # The town's police station, law-enforcement team and justice office, the district's
        # urban management bureau, and a police station of another district (out of area).
        self.depts = [f"{self.town}-GA", f"{self.town}-CG", f"{self.town}-SF", f"{district}-CG",
                      f"{other_town}-GA"]

    def _body(self, data: st.DataObject, action: str) -> ActionIn:
        kw: dict[str, Any] = {"note": data.draw(mostly(NOTE, None, "", "  "), label="note")}
        if action in ("dispatch", "whistle"):
            local = st.lists(st.sampled_from(self.depts[:4]), min_size=1, max_size=3, unique=True)
            kw["departments"] = data.draw(mostly(None, [], [self.depts[4]], [self.depts[0], self.depts[4]])
                                          .flatmap(lambda d: local if d is None else st.just(d)), label="departments")
        elif action in rules.DEPARTMENT_ACTIONS:
            wanted = {"acknowledge": "assigned", "handle": "acknowledged", "feedback": "acknowledged"}.get(action)
            rows = [a for a in self.assignments() if a.state not in rules.INACTIVE_ASSIGNMENTS]
            fitting = [a.department_code for a in rows if wanted in (None, a.state)] or self.depts
            kw["departments"] = [data.draw(mostly(None, *self.depts).flatmap(
                lambda d: st.sampled_from(fitting) if d is None else st.just(d)), label="department")]
        elif action == "verify":
            kw["passed"] = data.draw(mostly(True, False, None), label="passed")
        elif action == "rate":
            kw["rating"] = data.draw(mostly(0, None).flatmap(lambda r: st.integers(1, 5) if r == 0 else st.just(r)),
                                     label="rating")
        elif action == "extend":
            kw["days"] = data.draw(mostly(0, None).flatmap(lambda d: st.integers(1, 40) if d == 0 else st.just(d)),
                                   label="days")
        elif action == "merge":
            kw["target"] = data.draw(mostly(self.sibling_id, self.item_id, None, 10**8), label="target")
        elif action == "reply":
            kw["reply"] = data.draw(mostly("经调查，已答复信访人", None), label="reply")
        return ActionIn(**kw)

    def _snapshot(self) -> tuple[Any, ...]:
        item = self.item
        return (item.status, item.version, item.owner_code, item.escalation_level, item.extensions, item.closed_at,
                item.rating, item.due_at, item.handle_due_at, item.replied_at,
                tuple((a.department_code, a.state) for a in self.assignments()),
                timeline_len(self.session, self.item_id), audit_total(self.session))

    @rule(data=st.data())
    def act(self, data: st.DataObject) -> None:
        item = self.item
        state = item.status
        forward = FORWARD[state]
        if forward == "close" and item.kind == "petition" and item.replied_at is None:
            forward = "reply"
        if state == "handling" and not any(a.state == "acknowledged" for a in self.assignments()):
            forward = "acknowledge"
        how = data.draw(st.integers(0, 9), label="how")
        if how < 6:
            action = forward
        elif how < 9:
            action = data.draw(st.sampled_from(rules.actions_in(state) or rules.ACTIONS), label="allowed")
        else:
            action = data.draw(st.sampled_from(rules.ACTIONS), label="any")
        body = self._body(data, action)
        self.clock += timedelta(hours=data.draw(st.sampled_from([1, 5, 30]), label="hours"))
        before = self._snapshot()
        audit_before = audit_total(self.session)
        rating, level, extensions, handle_due = item.rating, item.escalation_level, item.extensions, item.handle_due_at
        try:
            service.act(self.session, SYSTEM, self.item_id, action, body, if_match=service.etag(item), now=self.clock)
        except DomainError as exc:
            if rules.allowed(action, state):
                # The table allowed it; the service refused for a business reason.
                assert exc.code != "transition_not_allowed"
                assert isinstance(exc, Invalid | Conflict | Forbidden | NotFound), exc
            else:
                assert isinstance(exc, Conflict) and exc.status == 409, exc
                assert exc.code == "transition_not_allowed"
            dirty = [o for o in self.session.dirty if self.session.is_modified(o)]
            assert not dirty and not self.session.new, (action, dirty, self.session.new)
            assert self._snapshot() == before, f"{action} failed with {exc.code} but changed the item"
            if exc.code == "reopen_not_allowed":
                assert state == "rated" and rating is not None and rating > rules.POOR_RATING
            if exc.code == "top_level":
                assert level == 2
            if exc.code == "extension_limit":
                assert extensions == rules.MAX_EXTENSIONS[item.kind]
        else:
            assert rules.allowed(action, state), f"{action} succeeded in {state}"
            after = self.item.status
            assert after in outcomes(action, state), f"{action}: {state} -> {after}"
            assert audit_total(self.session) == audit_before + 1
            item = self.item
            if action == "reopen":
                assert state == "closed" or (rating is not None and rating <= rules.POOR_RATING)
                assert item.rating is None and item.closed_at is None
            if action == "escalate":
                assert item.escalation_level == level + 1
            if action == "extend":
                assert item.extensions == extensions + 1
                assert item.kind != "petition" or (body.days or 0) <= rules.PETITION_MAX_EXTENSION_DAYS
                # An extension never shortens the handling deadline (nor the one dispatching would set).
                floor = handle_due or config.deadline(self.session, self.clock, item.kind, item.category_code,
                                                      item.priority, "handle")
                assert floor is not None and item.handle_due_at is not None and item.handle_due_at > floor
            if action == "close" and item.kind == "petition":
                assert item.replied_at is not None
            self.ok += 1
        # One action is one request and one commit: append its audit entries as the commit hook would.
        audit.append_entries(self.session, self.session.info.pop("audit_pending", []))

    @invariant()
    def consistent(self) -> None:
        if not self.item_id:
            return
        item = self.item
        assert item.status in rules.STATES
        assert item.step == rules.sla_step(item.status)
        if item.status in ("closed", "rated", "rejected", "merged"):
            assert item.closed_at is not None
        else:
            assert item.closed_at is None
        if item.status == "rated":
            assert item.rating is not None
        if item.status == "merged":
            assert item.merged_into == self.sibling_id
        if item.kind == "petition" and item.status in ("closed", "rated"):
            assert item.replied_at is not None and item.reply_text
        active = [a.state for a in self.assignments() if a.state not in rules.INACTIVE_ASSIGNMENTS]
        if item.status in ("dispatched", "handling", "feedback"):
            assert active, f"{item.status} with nobody assigned"
        if item.status == "feedback":
            assert set(active) == {"reported"}
        if item.status == "handling":
            assert set(active) != {"reported"}
        assert 0 <= item.escalation_level <= 2
        assert item.extensions <= rules.MAX_EXTENSIONS[item.kind]
        assert timeline_len(self.session, self.item_id) == self.ok + 1

    def teardown(self) -> None:
        try:
            if self.item_id:
                result = audit.verify(self.session)
                assert result.ok, result
                assert result.checked == self.audit_start + self.ok
        finally:
            self.session.rollback()
            self.session.close()


def test_no_action_sequence_leaves_the_table(city_db: Database, demo_city: DemoCity) -> None:
    ItemLifecycle.database = city_db
    ItemLifecycle.city = demo_city
    run_state_machine_as_test(ItemLifecycle, settings=settings(
        max_examples=40, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]))
