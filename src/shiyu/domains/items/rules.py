"""The law of work items 工单规则: kinds, states, the transition table, who may act.

One lifecycle for every kind of item, named after the digital city-management
workflow: report 上报 > accept 受理 > register 立案 > dispatch 派遣 > handle 处置 >
report back 反馈 > verify 核查 > close 结案 > rate 评价, with reject 不予受理,
return 退回, reopen 重新办理, extend 延期, escalate 上报上级 and merge 并单.

Everything here is pure data and pure functions: no database, no web.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KINDS: Final = ("event", "dispute", "petition", "hotline")
KIND_LABELS: Final = {"event": "事件", "dispute": "矛盾纠纷", "petition": "信访", "hotline": "12345工单"}
PRIORITIES: Final = ("low", "normal", "high", "urgent")

STATES: Final = (
    "reported",  # 上报: waiting to be accepted
    "accepted",  # 受理
    "registered",  # 立案: ready to dispatch
    "dispatched",  # 派遣: departments assigned, none has reported in yet
    "handling",  # 处置: at least one department acknowledged (报到)
    "feedback",  # 反馈: every assigned department has reported back
    "verified",  # 核查: the owner checked the result
    "closed",  # 结案
    "rated",  # 评价: the reporter rated the handling
    "rejected",  # 不予受理
    "merged",  # 并单: folded into another item
)
STATE_LABELS: Final = {
    "reported": "待受理", "accepted": "已受理", "registered": "已立案", "dispatched": "已派遣",
    "handling": "处置中", "feedback": "已反馈", "verified": "已核查", "closed": "已结案", "rated": "已评价",
    "rejected": "不予受理", "merged": "已并单",
}
ACTION_LABELS: Final = {
    "accept": "受理", "register": "立案", "dispatch": "派遣", "whistle": "吹哨报到", "acknowledge": "报到",
    "handle": "处置", "feedback": "反馈", "verify": "核查", "close": "结案", "reject": "不予受理", "return": "退回",
    "reopen": "重新办理", "extend": "延期", "escalate": "上报上级", "rate": "评价", "reply": "答复", "merge": "并单",
}
OPEN_STATES: Final = frozenset({"reported", "accepted", "registered", "dispatched", "handling", "feedback", "verified"})
TERMINAL_STATES: Final = frozenset({"rated", "rejected", "merged"})

ACTIONS: Final = (
    "accept", "register", "dispatch", "whistle", "acknowledge", "handle", "feedback", "verify", "close",
    "reject", "return", "reopen", "extend", "escalate", "rate", "reply", "merge",
)

#: The permission (authz action) each item action needs.
PERMISSION: Final = {
    "accept": "item.dispatch", "register": "item.dispatch", "dispatch": "item.dispatch",
    "whistle": "item.dispatch", "verify": "item.dispatch", "close": "item.dispatch", "reject": "item.dispatch",
    "reopen": "item.dispatch", "extend": "item.dispatch", "merge": "item.dispatch",
    "acknowledge": "item.handle", "handle": "item.handle", "feedback": "item.handle", "return": "item.handle",
    "escalate": "item.escalate", "rate": "item.rate", "reply": "item.reply",
}

#: Actions taken by an assigned department (checked against the item's assignments),
#: the others by the owning centre (checked against the owner unit).
DEPARTMENT_ACTIONS: Final = frozenset({"acknowledge", "handle", "feedback", "return"})
#: Actions anyone with the permission may take anywhere the item lies in their
#: jurisdiction (not only its owning centre): the grid worker's follow-up rating 回访评价
#: and a reply 答复 by whoever handled it.
LOCATION_ACTIONS: Final = frozenset({"rate", "reply"})


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[str]
    #: The state after the action; None keeps the state (or it is decided by the service,
    #: e.g. the last department's feedback moves the item to "feedback").
    target: str | None
    needs_reason: bool = False


def _t(action: str, sources: str, target: str | None, needs_reason: bool = False) -> Transition:
    return Transition(action, frozenset(sources.split()), target, needs_reason)


TRANSITIONS: Final[dict[str, Transition]] = {t.action: t for t in (
    _t("accept", "reported", "accepted"),
    _t("reject", "reported accepted", "rejected", needs_reason=True),
    _t("register", "accepted", "registered"),
    _t("dispatch", "registered dispatched handling", None),
    _t("whistle", "registered dispatched handling", None),
    _t("acknowledge", "dispatched handling", "handling"),
    _t("handle", "handling", None),
    _t("feedback", "handling", None),
    _t("return", "dispatched handling", None, needs_reason=True),
    _t("verify", "feedback", None),
    _t("close", "verified", "closed"),
    _t("rate", "closed", "rated"),
    _t("reopen", "closed rated", "registered", needs_reason=True),
    _t("extend", "accepted registered dispatched handling", None, needs_reason=True),
    _t("escalate", "reported accepted registered dispatched handling feedback", None, needs_reason=True),
    _t("reply", "accepted registered dispatched handling feedback verified closed rated rejected", None),
    _t("merge", "reported accepted registered", "merged"),
)}

#: A poor rating 差评 (at or below this score) allows reopening a rated item.
POOR_RATING: Final = 2
MAX_EXTENSIONS: Final = {"petition": 1, "event": 2, "dispute": 2, "hotline": 2}
#: Statutory petition limits 信访工作条例: accept within 15 days, handle within 60, extend once by <= 30.
PETITION_MAX_EXTENSION_DAYS: Final = 30


def allowed(action: str, state: str) -> bool:
    t = TRANSITIONS.get(action)
    return t is not None and state in t.sources


def why_not(action: str, state: str) -> str | None:
    """A human reason (English; the API localises by code) why ``action`` can't run in ``state``."""
    if action not in TRANSITIONS:
        return f"unknown action {action}"
    if state not in TRANSITIONS[action].sources:
        allowed_in = ", ".join(sorted(TRANSITIONS[action].sources))
        return f"cannot {action} an item that is {state}; allowed when {allowed_in}"
    return None


def actions_in(state: str) -> list[str]:
    return [a for a in ACTIONS if state in TRANSITIONS[a].sources]


def sla_step(state: str) -> str | None:
    """The step whose deadline runs while an item is in ``state``."""
    return {
        "reported": "accept", "accepted": "dispatch", "registered": "dispatch", "dispatched": "acknowledge",
        "handling": "handle", "feedback": "verify",
    }.get(state)


#: Assignment states that no longer count: returned by the department 退回, or closed
#: out when the item was reopened (a reopened item is dispatched afresh).
INACTIVE_ASSIGNMENTS: Final = frozenset({"returned", "done"})


def next_state_after_feedback(assignment_states: list[str]) -> str:
    """The item moves to feedback 反馈 once every active assignment reported back."""
    active = [s for s in assignment_states if s not in INACTIVE_ASSIGNMENTS]
    return "feedback" if active and all(s == "reported" for s in active) else "handling"


def next_state_after_return(assignment_states: list[str]) -> str:
    """A department returning the item 退回: with nobody left on it, it goes back to the centre."""
    active = [s for s in assignment_states if s not in INACTIVE_ASSIGNMENTS]
    if not active:
        return "registered"
    if all(s == "reported" for s in active):
        return "feedback"
    return "handling" if any(s in ("acknowledged", "reported") for s in active) else "dispatched"


def can_reopen(state: str, rating: int | None, verify_failed: bool = False) -> bool:
    """Reopen 重新办理 after a poor rating, or a closed item the centre finds unresolved."""
    if state == "rated":
        return rating is not None and rating <= POOR_RATING
    return state == "closed"


def priority_rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else 1
