"""Deadline engine for work-item SLAs 时限, with working days 工作日 and a holiday calendar 节假日.

Two kinds of durations:

* elapsed time (``minutes``/``hours``): runs round the clock, e.g. "acknowledge within 2 hours";
* day-based (``days``/``working_days``): the deadline is always the END of a working day in
  local time (``Asia/Shanghai``), i.e. 23:59:59.999999 local, never a holiday 节假日 or a
  non-working weekend day. Adjusted working weekends 调休上班 count as working days.

``WorkCalendar.add`` always returns an aware datetime in UTC; convert with
``.astimezone(LOCAL_TZ)`` for display. Dates outside the years the calendar knows fall back to
plain Monday-Friday working weeks.

Pure Python (stdlib + zoneinfo); no database or web dependencies.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

__all__ = ["LOCAL_TZ", "Duration", "DurationUnit", "WorkCalendar"]

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

DurationUnit = Literal["minutes", "hours", "days", "working_days"]
_UNITS: tuple[str, ...] = get_args(DurationUnit)

# Canonical short suffix per unit, used by ``Duration.__str__``.
_SUFFIX: dict[str, str] = {"minutes": "m", "hours": "h", "days": "d", "working_days": "wd"}

# Accepted spellings (lower-cased, inner whitespace collapsed to one space) -> unit.
_ALIASES: dict[str, DurationUnit] = {
    **{a: "minutes" for a in ("m", "min", "mins", "minute", "minutes", "分钟")},
    **{a: "hours" for a in ("h", "hr", "hrs", "hour", "hours", "小时", "个小时")},
    **{a: "days" for a in ("d", "day", "days", "天")},
    **{a: "working_days" for a in ("wd", "working day", "working days", "workday", "workdays", "工作日", "个工作日")},
}

# ASCII digits only: ``\d`` would also accept full-width and other Unicode digits.
_DURATION_RE = re.compile(r"([0-9]+)\s*(.+)")


@dataclass(frozen=True)
class Duration:
    """A time limit 时限 as written in configuration, e.g. ``"2h"``, ``"15d"`` or ``"5wd"``.

    ``amount`` is a non-negative integer; ``unit`` is one of ``minutes``, ``hours``,
    ``days`` (calendar days 自然日) or ``working_days`` (working days 工作日).
    """

    amount: int
    unit: DurationUnit

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError(f"Duration amount must be an int, got {type(self.amount).__name__}")
        if self.amount < 0:
            raise ValueError(f"Duration amount must be >= 0, got {self.amount}")
        if self.unit not in _UNITS:
            raise ValueError(f"Duration unit must be one of {', '.join(_UNITS)}; got {self.unit!r}")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse ``"30m"``, ``"2h"``, ``"15d"``, ``"5wd"`` or the long forms ``"30 minutes"``,
        ``"2 hours"``, ``"15 days"``, ``"5 working days"`` (also ``"5个工作日"``, ``"2小时"``).

        Case-insensitive; surrounding whitespace is ignored. Raises ``ValueError`` otherwise.
        """
        if not isinstance(text, str):
            raise TypeError(f"Duration.parse expects a str, got {type(text).__name__}")
        match = _DURATION_RE.fullmatch(text.strip())
        unit = None
        if match is not None:
            spelled = " ".join(match.group(2).lower().split())
            unit = _ALIASES.get(spelled)
        if match is None or unit is None:
            raise ValueError(
                f"invalid duration {text!r}: expected a non-negative whole number followed by a unit, "
                'e.g. "30m", "2h", "15d", "5wd", "2 hours", "15 days" or "5 working days"'
            )
        return cls(int(match.group(1)), unit)

    @property
    def is_day_based(self) -> bool:
        """True for ``days`` and ``working_days`` (deadline at the end of a working day)."""
        return self.unit in ("days", "working_days")

    def __str__(self) -> str:
        """Canonical short form, e.g. ``"5wd"``; ``Duration.parse(str(d)) == d``."""
        return f"{self.amount}{_SUFFIX[self.unit]}"


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()}); attach a tzinfo")


def _local_date(value: datetime) -> date:
    return value.astimezone(LOCAL_TZ).date()


def _end_of_day_utc(d: date) -> datetime:
    """23:59:59.999999 local time on ``d``, expressed in UTC."""
    return datetime.combine(d, time.max, tzinfo=LOCAL_TZ).astimezone(UTC)


def _weekdays_through(d: date) -> int:
    """Number of Monday-Friday dates from 0001-01-01 (a Monday) through ``d`` inclusive."""
    weeks, rest = divmod(d.toordinal(), 7)
    return weeks * 5 + min(rest, 5)


def _parse_iso_dates(data: Mapping[str, Any], key: str) -> list[date]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        raise ValueError(f"calendar {key!r} must be a list of 'YYYY-MM-DD' strings")
    out: list[date] = []
    for item in raw:
        if not isinstance(item, str):
            raise ValueError(f"calendar {key!r} entry {item!r} is not a 'YYYY-MM-DD' string")
        try:
            parsed = date.fromisoformat(item)
        except ValueError:
            parsed = None
        if parsed is None or parsed.isoformat() != item:
            raise ValueError(f"calendar {key!r} entry {item!r} is not a valid 'YYYY-MM-DD' date")
        out.append(parsed)
    return out


class WorkCalendar:
    """Working-day calendar 工作日历.

    A day is a working day 工作日 when it is Monday-Friday and not in ``holidays`` 节假日, or when it
    is listed in ``workdays`` (weekend days worked by adjustment 调休上班). Listing weekend days
    in ``holidays`` is harmless. A date may not be both a holiday and a workday.

    Instances are immutable and hashable; equality compares the two date sets.
    """

    __slots__ = ("_holidays", "_workdays", "_weekday_holidays", "_weekend_workdays")

    def __init__(self, holidays: Iterable[date] = (), workdays: Iterable[date] = ()) -> None:
        hol = frozenset(holidays)
        work = frozenset(workdays)
        for d in hol | work:
            if not isinstance(d, date) or isinstance(d, datetime):
                raise TypeError(f"calendar entries must be dates, got {d!r}")
        clash = hol & work
        if clash:
            listed = ", ".join(sorted(d.isoformat() for d in clash))
            raise ValueError(f"dates listed both as holiday and as workday: {listed}")
        self._holidays = hol
        self._workdays = work
        # Only these two subsets change the plain Monday-Friday count.
        self._weekday_holidays = tuple(sorted(d for d in hol if d.weekday() < 5))
        self._weekend_workdays = tuple(sorted(d for d in work if d.weekday() >= 5))

    # -- construction / serialisation -------------------------------------------------

    @classmethod
    def default(cls) -> WorkCalendar:
        """Mainland China calendar from ``holidays_cn.json`` shipped with this module (loaded once)."""
        return _default_calendar()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkCalendar:
        """Build from ``{"holidays": ["YYYY-MM-DD", ...], "workdays": [...]}``.

        Both keys are optional; other keys (``source``, ``note``) are ignored.
        Raises ``ValueError`` on malformed input.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"calendar data must be a JSON object, got {type(data).__name__}")
        return cls(_parse_iso_dates(data, "holidays"), _parse_iso_dates(data, "workdays"))

    def to_json(self) -> dict[str, list[str]]:
        """``{"holidays": [...], "workdays": [...]}`` with sorted ISO dates; inverse of ``from_json``."""
        return {
            "holidays": sorted(d.isoformat() for d in self._holidays),
            "workdays": sorted(d.isoformat() for d in self._workdays),
        }

    @property
    def holidays(self) -> frozenset[date]:
        """Days off 节假日 as listed."""
        return self._holidays

    @property
    def workdays(self) -> frozenset[date]:
        """Adjusted working days 调休上班 as listed."""
        return self._workdays

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkCalendar):
            return NotImplemented
        return self._holidays == other._holidays and self._workdays == other._workdays

    def __hash__(self) -> int:
        return hash((self._holidays, self._workdays))

    def __repr__(self) -> str:
        return f"WorkCalendar(<{len(self._holidays)} holidays>, <{len(self._workdays)} workdays>)"

    # -- days ---------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        """Monday-Friday unless a holiday 节假日; Saturday/Sunday only if an adjusted workday 调休上班."""
        if isinstance(d, datetime):
            raise TypeError("is_working_day takes a date; use .astimezone(LOCAL_TZ).date() first")
        if d in self._workdays:
            return True
        if d in self._holidays:
            return False
        return d.weekday() < 5

    def next_working_day(self, d: date) -> date:
        """``d`` itself when it is a working day, else the first working day after it."""
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def _working_days_after(self, first: date, last: date) -> int:
        """Working days ``x`` with ``first < x <= last`` (0 when ``last <= first``)."""
        if last <= first:
            return 0
        count = _weekdays_through(last) - _weekdays_through(first)
        count -= sum(1 for d in self._weekday_holidays if first < d <= last)
        count += sum(1 for d in self._weekend_workdays if first < d <= last)
        return count

    # -- deadlines ----------------------------------------------------------------------

    def add(self, start: datetime, duration: Duration) -> datetime:
        """Deadline 截止时间 for ``duration`` counted from ``start``; returned as an aware UTC datetime.

        * ``minutes``/``hours``: plain elapsed time, round the clock.
        * ``days`` (calendar days 自然日, e.g. petition limits 信访 15/30/60 days): end of the local
          day ``start_date + amount``; if that is not a working day, end of the next working day
          (a period ending on a holiday is extended, as in Chinese procedural law). ``0d`` is the
          end of the start day, rolled forward likewise.
        * ``working_days`` 工作日: counting starts on the next day; end of the ``amount``-th working
          day after the local start date. ``0wd`` is the end of the start day when it is a working
          day, else the end of the next working day.

        ``start`` must be timezone-aware (``ValueError`` otherwise); "local" means ``LOCAL_TZ``.
        """
        _require_aware("start", start)
        if not isinstance(duration, Duration):
            raise TypeError(f"duration must be a Duration, got {type(duration).__name__}")
        if duration.unit == "minutes":
            return start.astimezone(UTC) + timedelta(minutes=duration.amount)
        if duration.unit == "hours":
            return start.astimezone(UTC) + timedelta(hours=duration.amount)
        day = _local_date(start)
        if duration.unit == "days":
            return _end_of_day_utc(self.next_working_day(day + timedelta(days=duration.amount)))
        # working_days
        if duration.amount == 0:
            return _end_of_day_utc(self.next_working_day(day))
        remaining = duration.amount
        while remaining:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return _end_of_day_utc(day)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Working days 工作日 strictly after ``start``'s local date up to and including ``end``'s.

        Matches ``add``: ``working_days_between(s, add(s, Duration(n, "working_days"))) == n`` for
        every ``n >= 1`` (and for ``n == 0`` when ``s`` falls on a working day). Negative when ``end``
        is on an earlier local date than ``start``. Both must be timezone-aware.
        """
        _require_aware("start", start)
        _require_aware("end", end)
        first, last = _local_date(start), _local_date(end)
        if last < first:
            return -self._working_days_after(last, first)
        return self._working_days_after(first, last)


@functools.cache
def _default_calendar() -> WorkCalendar:
    text = resources.files(__name__.rpartition(".")[0]).joinpath("holidays_cn.json").read_text(encoding="utf-8")
    return WorkCalendar.from_json(json.loads(text))
