"""Early warning 预警 ("未警预动", act before the alarm).

Two kinds of warning for a unit's children (the next administrative level down):

* rising counts 数量异常上升: per child unit and category 分类, the count of work items
  in the latest window against the same-length windows of the previous weeks, judged by
  three detectors over the count series — a Poisson threshold 泊松阈值, an EWMA control
  chart 指数加权移动平均控制图 and a one-sided CUSUM 累积和; the method that fired is named;
* overdue clusters 超期聚集: child units where many open items are past their deadline.

The detectors are pure functions over a count series (oldest first, the last element is
the period being judged) and use only the standard library and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from shiyu.domains.items.models import Category, WorkItem
from shiyu.domains.items.service import ItemFilter, filtered
from shiyu.platform.authz.principal import Principal
from shiyu.platform.units.models import Unit

Method = Literal["poisson", "ewma", "cusum"]
Counts = Sequence[int] | Sequence[float] | npt.NDArray[np.integer] | npt.NDArray[np.floating]

#: A count below this never raises an alarm, however quiet the history (3 件起报).
MIN_ALARM_COUNT = 3
#: ``channel`` of the work items raised from warnings 预警转工单 (``analysis.service.raise_warnings``).
#: Rising counts leave them out: otherwise the items raised for a rise would count as the
#: next days' rise and keep the warning alive on their own.
WARNING_CHANNEL = "预警"


# --------------------------------------------------------------------------- detectors 检测器

@dataclass(frozen=True)
class Signal:
    """One detector's verdict 检测结果 on the last period of a series."""

    method: Method
    flagged: bool
    current: float
    expected: float
    threshold: float
    #: poisson: current / expected; ewma: standardised EWMA statistic (z); cusum: S_t.
    score: float
    detail: str


def _as_array(series: Counts) -> npt.NDArray[np.float64]:
    arr = np.asarray(series, dtype=np.float64).ravel()
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr < 0)):
        raise ValueError("counts must be finite and non-negative")
    return arr


def _log_pmf(i: int, mu: float) -> float:
    return i * math.log(mu) - mu - math.lgamma(i + 1)


def poisson_tail(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu) 泊松尾概率, without scipy.

    Below the mean it is 1 minus the lower sum; above it, a recursive upper sum starting
    from the log-pmf at k (p_{i+1} = p_i * mu / (i + 1)), so tiny tails keep precision."""
    if k <= 0:
        return 1.0
    if mu < 0 or not math.isfinite(mu):
        raise ValueError("mu must be finite and non-negative")
    if mu == 0:
        return 0.0
    if k <= mu:
        term = math.exp(-mu)
        lower = 0.0
        for i in range(k):
            if i > 0:
                term *= mu / i
            lower += term
        # for large mu exp(-mu) underflows; fall back to log-space terms
        if lower == 0.0:
            lower = math.fsum(math.exp(_log_pmf(i, mu)) for i in range(k))
        return min(1.0, max(0.0, 1.0 - lower))
    term = math.exp(_log_pmf(k, mu))
    total = 0.0
    i = k
    while term > 0.0:
        total += term
        i += 1
        term *= mu / i
        if term < total * 1e-17:
            break
    return min(1.0, total)


def poisson_quantile(mu: float, alpha: float) -> int:
    """Smallest k with P(X >= k) <= alpha under Poisson(mu) 泊松阈值."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    k = max(0, int(math.floor(mu)))
    if poisson_tail(k, mu) <= alpha:
        while k > 0 and poisson_tail(k - 1, mu) <= alpha:
            k -= 1
        return k
    while poisson_tail(k, mu) > alpha:
        k += 1
    return k


def poisson_threshold(history: Counts, current: float, *, alpha: float = 0.01, min_history: int = 8,
                      season: int | None = None) -> Signal:
    """Poisson threshold 泊松阈值: expected = mean of the history (with ``season`` = 7 on a
    daily series, only the same weekday 同比星期); flags when ``current`` reaches the
    smallest k with P(X >= k) <= alpha and is at least 3.

    An all-zero history is given a floor of half an item over its length, so a first
    handful of items is surprising but not infinitely so."""
    hist = _as_array(history)
    cur = float(current)
    if season is not None and season > 1:
        # positions season, 2*season, ... before the judged period
        hist = hist[::-1][season - 1::season][::-1]
    n = int(hist.size)
    if n < min_history:
        mean = float(hist.mean()) if n else 0.0
        return Signal("poisson", False, cur, mean, math.nan, math.nan,
                      f"insufficient history: {n} periods < {min_history}")
    expected = max(float(hist.mean()), 0.5 / n)
    k = poisson_quantile(expected, alpha)
    flagged = cur >= k and cur >= MIN_ALARM_COUNT
    p = poisson_tail(int(math.ceil(cur)), expected)
    ratio = cur / expected
    detail = (f"Poisson: {cur:g} against expected {expected:.2f} over {n} periods; threshold {k} "
              f"(P(X>={k})<={alpha:g}); P(X>={cur:g})={p:.2g}")
    return Signal("poisson", flagged, cur, expected, float(k), ratio, detail)


def _baseline(arr: npt.NDArray[np.float64], warmup: int) -> tuple[float, float]:
    """Mean and sd of the warm-up part; the sd is floored at the Poisson sd (sqrt of the
    mean) and 0.5, so a constant or very quiet baseline does not make every blip an alarm."""
    base = arr[:warmup]
    mu = float(base.mean())
    sd = float(base.std(ddof=1)) if base.size > 1 else 0.0
    return mu, max(sd, math.sqrt(mu), 0.5)


def ewma(series: Counts, *, lam: float = 0.3, L: float = 3.0, warmup: int = 8) -> Signal:  # noqa: N803
    """EWMA control chart 指数加权移动平均控制图: z_t = lam * x_t + (1 - lam) * z_{t-1}
    from z = mean of the warm-up part, over the points after it; flags when the last z
    exceeds the upper control limit mu + L * sd * sqrt(lam / (2 - lam) * (1 - (1 - lam)^(2t)))."""
    if not 0 < lam <= 1:
        raise ValueError("lam must be in (0, 1]")
    arr = _as_array(series)
    cur = float(arr[-1]) if arr.size else math.nan
    if arr.size <= warmup or warmup < 2:
        return Signal("ewma", False, cur, math.nan, math.nan, math.nan,
                      f"insufficient history: {arr.size} periods, need more than a warm-up of {warmup}")
    mu, sd = _baseline(arr, warmup)
    z = mu
    monitored = arr[warmup:]
    for x in monitored:
        z = lam * float(x) + (1 - lam) * z
    t = int(monitored.size)
    sigma_z = sd * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * t)))
    ucl = mu + L * sigma_z
    flagged = z > ucl
    score = (z - mu) / sigma_z
    detail = (f"EWMA: z={z:.2f} against upper control limit {ucl:.2f} (mean {mu:.2f}, sd {sd:.2f}, "
              f"lambda {lam:g}, L {L:g}, {t} monitored periods)")
    return Signal("ewma", flagged, cur, mu, ucl, score, detail)


def cusum(series: Counts, *, k: float = 0.5, h: float = 4.0, warmup: int = 8) -> Signal:
    """One-sided upper CUSUM 累积和 in standardised units: S_t = max(0, S_{t-1} + (x_t - mu) / sd - k)
    over the points after the warm-up; flags when the final S_t exceeds h."""
    arr = _as_array(series)
    cur = float(arr[-1]) if arr.size else math.nan
    if arr.size <= warmup or warmup < 2:
        return Signal("cusum", False, cur, math.nan, math.nan, math.nan,
                      f"insufficient history: {arr.size} periods, need more than a warm-up of {warmup}")
    mu, sd = _baseline(arr, warmup)
    s = 0.0
    for x in arr[warmup:]:
        s = max(0.0, s + (float(x) - mu) / sd - k)
    flagged = s > h
    detail = f"CUSUM: S={s:.2f} against h={h:g} (mean {mu:.2f}, sd {sd:.2f}, k {k:g})"
    return Signal("cusum", flagged, cur, mu, h, s, detail)


def detect(series: Counts, *, methods: Iterable[str] = ("poisson", "ewma", "cusum")) -> list[Signal]:
    """Run the named detectors over ``series`` (the last element is the period judged)."""
    arr = _as_array(series)
    out: list[Signal] = []
    for m in methods:
        if m == "poisson":
            out.append(poisson_threshold(arr[:-1], float(arr[-1]) if arr.size else 0.0))
        elif m == "ewma":
            out.append(ewma(arr))
        elif m == "cusum":
            out.append(cusum(arr))
        else:
            raise ValueError(f"unknown method {m!r}")
    return out


def is_alarm(signals: Iterable[Signal]) -> bool:
    """Combined rule 综合判定: the Poisson threshold fires, or both EWMA and CUSUM fire."""
    flagged = {s.method for s in signals if s.flagged}
    return "poisson" in flagged or {"ewma", "cusum"} <= flagged


# --------------------------------------------------------------------------- warnings over the database

@dataclass(frozen=True)
class EarlyWarning:  # noqa: A001 - the domain word; callers import it qualified
    """An early warning 预警 for one child unit (and category)."""

    kind: Literal["rising", "overdue_cluster"]
    unit_code: str
    unit_name: str
    category: str | None
    #: "poisson", "ewma+cusum" or, for overdue clusters, "overdue_share".
    method: str
    current: float
    expected: float
    threshold: float
    score: float
    message_zh: str
    message_en: str


def _children(session: Session, unit_code: str) -> tuple[Unit, list[Unit]]:
    unit = session.execute(select(Unit).where(Unit.code == unit_code)).scalar_one_or_none()
    if unit is None:
        from shiyu.kit.errors import Invalid

        raise Invalid("unknown unit", code="unknown_unit", field="unit", params={"code": unit_code})
    kids = list(session.execute(select(Unit).where(Unit.parent_code == unit_code, Unit.kind != "department")
                                .order_by(Unit.code)).scalars())
    return unit, kids or [unit]


def _child_of(scope_path: str, unit: Unit, kids: dict[str, Unit]) -> str | None:
    """The child unit code an item's location path falls under, or None (items located
    at the unit itself, when it has children)."""
    if unit.code in kids:
        return unit.code
    if not scope_path.startswith(unit.path):
        return None
    code = scope_path[len(unit.path):].split("/", 1)[0]
    return code if code in kids else None


def _category_names(session: Session, codes: Iterable[str | None]) -> dict[str, str]:
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    rows = session.execute(select(Category.code, Category.name).where(Category.code.in_(wanted))).all()
    return {c: n for c, n in rows}


def rising_counts(session: Session, principal: Principal, *, unit_code: str, as_of: datetime, days: int = 7,
                  history_weeks: int = 12, min_count: int = 3) -> list[EarlyWarning]:
    """Rising counts 数量异常上升: for each child unit of ``unit_code`` and each category,
    the items created in [as_of - days, as_of) against the same windows shifted back by
    1..history_weeks weeks (同期对比). Counting is one GROUP BY per window over the
    principal's scoped statement, leaving out items raised from warnings (``WARNING_CHANNEL``);
    a warning is raised when :func:`is_alarm` holds and the current count is at least
    ``min_count``."""
    if days < 1 or history_weeks < 1:
        raise ValueError("days and history_weeks must be positive")
    unit, kid_list = _children(session, unit_code)
    kids = {k.code: k for k in kid_list}
    base = (filtered(session, principal, ItemFilter(unit=unit_code), now=as_of)
            .where(or_(WorkItem.channel.is_(None), WorkItem.channel != WARNING_CHANNEL)))
    n_windows = history_weeks + 1
    counts: dict[tuple[str, str | None], npt.NDArray[np.int64]] = {}
    span = timedelta(days=days)
    for w in range(n_windows):  # w = 0 is the current window, stored last (oldest first)
        end = as_of - timedelta(weeks=w)
        stmt = (base.where(WorkItem.created_at >= end - span, WorkItem.created_at < end)
                .with_only_columns(WorkItem.scope_path, WorkItem.category_code, func.count())
                .group_by(WorkItem.scope_path, WorkItem.category_code).order_by(None))
        for scope_path, category, n in session.execute(stmt):
            child = _child_of(scope_path, unit, kids)
            if child is None:
                continue
            arr = counts.get((child, category))
            if arr is None:
                arr = counts[(child, category)] = np.zeros(n_windows, dtype=np.int64)
            arr[n_windows - 1 - w] += int(n)
    names = _category_names(session, (c for _, c in counts))
    out: list[EarlyWarning] = []
    warmup = min(8, history_weeks - 1)
    for (child, category), series in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        current = int(series[-1])
        if current < min_count:
            continue
        signals = [poisson_threshold(series[:-1], current, min_history=min(8, history_weeks)),
                   ewma(series, warmup=warmup), cusum(series, warmup=warmup)]
        if not is_alarm(signals):
            continue
        u = kids[child]
        cat_zh = names.get(category, category) if category else "未分类"
        cat_en = category or "uncategorised"
        by = {s.method: s for s in signals}
        p = by["poisson"]
        if p.flagged:
            method, lead = "poisson", p
            how_zh = f"泊松阈值 {p.threshold:g}"
            how_en = f"Poisson threshold {p.threshold:g}"
        else:
            e, c = by["ewma"], by["cusum"]
            method, lead = "ewma+cusum", e
            how_zh = f"EWMA 控制上限 {e.threshold:.1f}，CUSUM {c.score:.1f} > {c.threshold:g}"
            how_en = f"EWMA upper limit {e.threshold:.1f}, CUSUM {c.score:.1f} > {c.threshold:g}"
        expected = float(series[:-1].mean())
        out.append(EarlyWarning(
            kind="rising", unit_code=u.code, unit_name=u.name, category=category, method=method,
            current=float(current), expected=expected if method != "poisson" else p.expected,
            threshold=lead.threshold, score=lead.score,
            message_zh=(f"{u.name} {cat_zh} 近{days}天 {current} 件，预期 "
                        f"{(p.expected if method == 'poisson' else expected):.1f} 件（{how_zh}）"),
            message_en=(f"{u.name} {cat_en}: {current} items in the last {days} days, expected "
                        f"{(p.expected if method == 'poisson' else expected):.1f} ({how_en})"),
        ))
    out.sort(key=lambda w: -w.score)
    return out


def overdue_clusters(session: Session, principal: Principal, *, unit_code: str, as_of: datetime,
                     min_items: int = 5, share: float = 0.3) -> list[EarlyWarning]:
    """Overdue clusters 超期聚集: child units with at least ``min_items`` open items past
    their deadline (due_at < as_of, or marked overdue by the SLA tick) that are at least
    ``share`` of the unit's open items 在办工单."""
    unit, kid_list = _children(session, unit_code)
    kids = {k.code: k for k in kid_list}
    is_overdue = or_(and_(WorkItem.due_at.is_not(None), WorkItem.due_at < as_of), WorkItem.sla_state == "overdue")
    stmt = (filtered(session, principal, ItemFilter(unit=unit_code, open_only=True), now=as_of)
            .with_only_columns(WorkItem.scope_path, func.count(), func.sum(case((is_overdue, 1), else_=0)))
            .group_by(WorkItem.scope_path).order_by(None))
    open_n: dict[str, int] = {}
    overdue_n: dict[str, int] = {}
    for scope_path, n, od in session.execute(stmt):
        child = _child_of(scope_path, unit, kids)
        if child is None:
            continue
        open_n[child] = open_n.get(child, 0) + int(n)
        overdue_n[child] = overdue_n.get(child, 0) + int(od or 0)
    out: list[EarlyWarning] = []
    for child, total in sorted(open_n.items()):
        od = overdue_n.get(child, 0)
        frac = od / total if total else 0.0
        if od < min_items or frac < share:
            continue
        u = kids[child]
        out.append(EarlyWarning(
            kind="overdue_cluster", unit_code=u.code, unit_name=u.name, category=None, method="overdue_share",
            current=float(od), expected=float(total), threshold=float(min_items), score=frac / share,
            message_zh=(f"{u.name} 超期在办工单 {od} 件，占在办 {total} 件的 {frac:.0%}"
                        f"（阈值 {min_items} 件且 {share:.0%}）"),
            message_en=(f"{u.name}: {od} of {total} open items overdue ({frac:.0%}; "
                        f"threshold {min_items} items and {share:.0%})"),
        ))
    out.sort(key=lambda w: -w.score)
    return out


def all_warnings(session: Session, principal: Principal, *, unit_code: str, as_of: datetime) -> list[EarlyWarning]:
    """Both kinds of warning for ``unit_code``'s children, highest score first."""
    out = rising_counts(session, principal, unit_code=unit_code, as_of=as_of)
    out += overdue_clusters(session, principal, unit_code=unit_code, as_of=as_of)
    out.sort(key=lambda w: (-w.score, w.kind, w.unit_code, w.category or ""))
    return out
