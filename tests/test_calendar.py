"""Deadline engine 时限: durations, working days 工作日, holidays 节假日 and adjusted workdays 调休上班."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shiyu.platform.workflow.calendar import LOCAL_TZ, Duration, WorkCalendar

CN = WorkCalendar.default()
PLAIN = WorkCalendar()
HOLIDAYS_FILE = Path(__file__).parents[1] / "src/shiyu/platform/workflow/holidays_cn.json"

ZONES = [
    UTC,
    LOCAL_TZ,
    ZoneInfo("America/New_York"),
    ZoneInfo("Europe/London"),
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=14)),
]

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LOCAL_TZ)


def end_of(d: date) -> datetime:
    return datetime.combine(d, time.max, tzinfo=LOCAL_TZ)


def wd(n: int) -> Duration:
    return Duration(n, "working_days")


def days(n: int) -> Duration:
    return Duration(n, "days")


def reference_is_working(cal_json: dict[str, list[str]], d: date) -> bool:
    """Independent oracle straight from the JSON lists."""
    if d.isoformat() in cal_json["workdays"]:
        return True
    return d.weekday() < 5 and d.isoformat() not in cal_json["holidays"]


def brute_force_between(cal: WorkCalendar, first: date, last: date) -> int:
    """Working days x with first < x <= last, negated when last < first."""
    sign = 1
    if last < first:
        first, last, sign = last, first, -1
    count = 0
    d = first + timedelta(days=1)
    while d <= last:
        count += cal.is_working_day(d)
        d += timedelta(days=1)
    return sign * count


# -- strategies ---------------------------------------------------------------------------

aware_starts = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31, 23, 59, 59), timezones=st.sampled_from(ZONES)
)
dates_in_range = st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 3, 31))


@st.composite
def calendars(draw: st.DrawFn) -> WorkCalendar:
    holidays = draw(st.sets(dates_in_range, max_size=80))
    workdays = draw(st.sets(dates_in_range.filter(lambda d: d not in holidays), max_size=30))
    return WorkCalendar(holidays, workdays)


any_calendar = st.one_of(st.just(CN), st.just(PLAIN), calendars())
day_units = st.sampled_from(["days", "working_days"])
ALL_UNITS = ["minutes", "hours", "days", "working_days"]
durations = st.builds(Duration, st.integers(min_value=0, max_value=10_000), st.sampled_from(ALL_UNITS))


# -- Duration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", Duration(30, "minutes")),
        ("2h", Duration(2, "hours")),
        ("15d", Duration(15, "days")),
        ("5wd", Duration(5, "working_days")),
        ("0d", Duration(0, "days")),
        ("15 days", Duration(15, "days")),
        ("1 day", Duration(1, "days")),
        ("5 working days", Duration(5, "working_days")),
        ("1 working day", Duration(1, "working_days")),
        ("5  Working   Days", Duration(5, "working_days")),
        ("2 hours", Duration(2, "hours")),
        ("30 minutes", Duration(30, "minutes")),
        ("30 min", Duration(30, "minutes")),
        ("  5WD ", Duration(5, "working_days")),
        ("5个工作日", Duration(5, "working_days")),
        ("2小时", Duration(2, "hours")),
        ("60天", Duration(60, "days")),
        ("007d", Duration(7, "days")),
    ],
)
def test_duration_parse_good(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "5",
        "d",
        "wd",
        "-1d",
        "+5d",
        "1.5h",
        "5 weeks",
        "5w",
        "wd5",
        "5 d x",
        "5 dd",
        "5 working",
        "1e3m",
        "0x10m",
        "５d",
        "٥d",
        "5 d\n6 d",
        "five days",
    ],
)
def test_duration_parse_bad(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Duration.parse(text)


def test_duration_parse_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        Duration.parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("30 minutes", "30m"), ("2 hours", "2h"), ("15 days", "15d"), ("5 working days", "5wd"), ("0 wd", "0wd")],
)
def test_duration_canonical_str(text: str, canonical: str) -> None:
    assert str(Duration.parse(text)) == canonical


@given(durations)
def test_duration_round_trip(d: Duration) -> None:
    assert Duration.parse(str(d)) == d
    assert str(Duration.parse(str(d))) == str(d)


def test_duration_validates_fields() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Duration(-1, "days")
    with pytest.raises(ValueError, match="unit"):
        Duration(1, "weeks")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Duration(True, "days")
    with pytest.raises(TypeError):
        Duration(1.5, "hours")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Duration(1, "days").amount = 2  # type: ignore[misc]
    assert Duration(1, "days").is_day_based and not Duration(1, "hours").is_day_based


# -- default calendar data ----------------------------------------------------------------


def test_default_loads_and_is_cached() -> None:
    cal = WorkCalendar.default()
    assert cal is WorkCalendar.default()
    assert cal == WorkCalendar.from_json(json.loads(HOLIDAYS_FILE.read_text(encoding="utf-8")))
    assert len(cal.holidays) > 50 and len(cal.workdays) > 10


def test_holidays_file_shape() -> None:
    data = json.loads(HOLIDAYS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data["source"], str) and data["source"]
    assert isinstance(data["note"], str) and data["note"]
    assert data["holidays"] == sorted(set(data["holidays"]))
    assert data["workdays"] == sorted(set(data["workdays"]))
    assert not set(data["holidays"]) & set(data["workdays"])
    for d in map(date.fromisoformat, data["workdays"]):
        assert d.weekday() >= 5, f"{d} is listed as an adjusted workday but is a weekday"
    assert {date.fromisoformat(d).year for d in data["holidays"] + data["workdays"]} == {2024, 2025, 2026}


@pytest.mark.parametrize(("year", "statutory_days"), [(2024, 11), (2025, 13), (2026, 13)])
def test_adjustments_preserve_statutory_total(year: int, statutory_days: int) -> None:
    """调休 only moves days: working days == days in year - weekend days - statutory holidays
    (11 days up to 2024; 13 from 2025 after the 2024 revision of 全国年节及纪念日放假办法)."""
    all_days = [date(year, 1, 1) + timedelta(days=i) for i in range((date(year + 1, 1, 1) - date(year, 1, 1)).days)]
    weekend = sum(d.weekday() >= 5 for d in all_days)
    working = sum(CN.is_working_day(d) for d in all_days)
    assert working == len(all_days) - weekend - statutory_days


@pytest.mark.parametrize(
    ("day", "working"),
    [
        # 2024 (国办发明电〔2023〕7号)
        (date(2024, 2, 4), True),  # Sunday worked
        (date(2024, 2, 9), True),  # 除夕 2024 was only "encouraged" off, officially a working day
        (date(2024, 2, 12), False),
        (date(2024, 6, 10), False),
        (date(2024, 10, 12), True),  # Saturday worked
        # 2025 (国办发明电〔2024〕12号)
        (date(2025, 1, 1), False),
        (date(2025, 1, 26), True),
        (date(2025, 1, 28), False),  # 除夕
        (date(2025, 9, 28), True),
        *[(date(2025, 10, d), False) for d in range(1, 9)],
        (date(2025, 10, 9), True),
        (date(2025, 10, 11), True),
        (date(2025, 10, 12), False),
        # 2026
        (date(2026, 1, 2), False),
        (date(2026, 1, 4), True),
        (date(2026, 2, 14), True),
        (date(2026, 2, 23), False),
        (date(2026, 2, 28), True),
        (date(2026, 9, 20), True),
        (date(2026, 10, 7), False),
        (date(2026, 10, 10), True),
        # ordinary days
        (date(2025, 3, 14), True),
        (date(2025, 3, 15), False),
        (date(2027, 3, 1), True),  # outside the known years: plain Monday-Friday
    ],
)
def test_is_working_day_known_dates(day: date, working: bool) -> None:
    assert CN.is_working_day(day) is working


def test_is_working_day_rejects_datetimes() -> None:
    with pytest.raises(TypeError):
        CN.is_working_day(local(2025, 3, 14))


def test_next_working_day() -> None:
    assert CN.next_working_day(date(2025, 3, 14)) == date(2025, 3, 14)
    assert CN.next_working_day(date(2025, 3, 15)) == date(2025, 3, 17)
    assert CN.next_working_day(date(2025, 10, 1)) == date(2025, 10, 9)
    assert CN.next_working_day(date(2025, 9, 27)) == date(2025, 9, 28)  # Saturday -> worked Sunday


@given(any_calendar, dates_in_range)
def test_next_working_day_is_first_working_day(cal: WorkCalendar, d: date) -> None:
    nxt = cal.next_working_day(d)
    assert nxt >= d and cal.is_working_day(nxt)
    assert not any(cal.is_working_day(d + timedelta(days=i)) for i in range((nxt - d).days))


# -- fixed deadline examples --------------------------------------------------------------


def test_friday_afternoon_plus_one_working_day_is_end_of_monday() -> None:
    result = CN.add(local(2025, 3, 14, 16), wd(1))  # Friday 16:00
    assert result == end_of(date(2025, 3, 17))
    assert result.utcoffset() == timedelta(0) and result.tzinfo is UTC
    assert result.astimezone(LOCAL_TZ).replace(tzinfo=None) == datetime(2025, 3, 17, 23, 59, 59, 999999)


def test_friday_plus_one_working_day_skips_holiday_monday() -> None:
    assert CN.add(local(2025, 5, 30, 16), wd(1)) == end_of(date(2025, 6, 3))  # 2025-06-02 端午 Monday off


def test_working_days_around_national_day_2025() -> None:
    friday = local(2025, 9, 26, 16)
    assert CN.add(friday, wd(1)) == end_of(date(2025, 9, 28))  # adjusted working Sunday
    assert CN.add(friday, wd(3)) == end_of(date(2025, 9, 30))
    assert CN.add(friday, wd(4)) == end_of(date(2025, 10, 9))  # 10-01..10-08 off
    assert CN.add(friday, wd(5)) == end_of(date(2025, 10, 10))
    assert CN.add(friday, wd(6)) == end_of(date(2025, 10, 11))  # adjusted working Saturday
    assert CN.add(friday, wd(7)) == end_of(date(2025, 10, 13))
    assert CN.add(local(2025, 10, 3, 9), wd(0)) == end_of(date(2025, 10, 9))
    assert CN.add(local(2025, 9, 28, 9), wd(0)) == end_of(date(2025, 9, 28))
    assert CN.working_days_between(local(2025, 9, 30, 18), local(2025, 10, 9, 8)) == 1
    assert CN.working_days_between(friday, end_of(date(2025, 10, 13))) == 7


def test_spring_festival_2026() -> None:
    friday = local(2026, 2, 13, 10)
    assert CN.add(friday, wd(1)) == end_of(date(2026, 2, 14))  # worked Saturday
    assert CN.add(friday, wd(2)) == end_of(date(2026, 2, 24))  # 02-15..02-23 off


def test_fifteen_calendar_days_ending_on_sunday_roll_to_monday() -> None:
    start = local(2025, 3, 1, 10)
    assert date(2025, 3, 16).weekday() == 6
    assert CN.add(start, days(15)) == end_of(date(2025, 3, 17))
    assert CN.add(start, Duration.parse("15 days")) == end_of(date(2025, 3, 17))


def test_calendar_days_ending_in_a_holiday_roll_past_it() -> None:
    assert CN.add(local(2025, 9, 20, 10), days(15)) == end_of(date(2025, 10, 9))  # 10-05 is in the break
    assert CN.add(local(2025, 9, 12, 10), days(16)) == end_of(date(2025, 9, 28))  # worked Sunday: no roll
    assert CN.add(local(2025, 3, 3, 10), days(60)) == end_of(date(2025, 5, 6))  # 05-02 off -> after 劳动节


def test_zero_calendar_days() -> None:
    assert CN.add(local(2025, 3, 14, 10), days(0)) == end_of(date(2025, 3, 14))
    assert CN.add(local(2025, 3, 15, 10), days(0)) == end_of(date(2025, 3, 17))


def test_local_date_is_used_not_the_start_timezone_date() -> None:
    start = datetime(2025, 3, 13, 17, 30, tzinfo=UTC)  # = Friday 2025-03-14 01:30 in Shanghai
    assert CN.add(start, wd(1)) == end_of(date(2025, 3, 17))
    assert CN.add(start, days(0)) == end_of(date(2025, 3, 14))


def test_hours_across_midnight_run_round_the_clock() -> None:
    result = CN.add(local(2025, 3, 14, 23, 30), Duration.parse("2h"))
    assert result == local(2025, 3, 15, 1, 30)
    assert result == datetime(2025, 3, 14, 17, 30, tzinfo=UTC) and result.tzinfo is UTC
    assert CN.add(local(2025, 9, 30, 22), Duration(24, "hours")) == local(2025, 10, 1, 22)  # holidays irrelevant
    ny = datetime(2025, 3, 8, 23, 0, tzinfo=ZoneInfo("America/New_York"))  # DST starts 03-09 02:00
    later = CN.add(ny, Duration(4, "hours"))  # 23:00 EST = 04:00 UTC; 4 elapsed hours, not 4 wall-clock hours
    assert later == datetime(2025, 3, 9, 8, 0, tzinfo=UTC)
    assert later.astimezone(ZoneInfo("America/New_York")).replace(tzinfo=None) == datetime(2025, 3, 9, 4, 0)
    assert CN.add(ny, Duration.parse("30m")) - ny == timedelta(minutes=30)


def test_naive_datetimes_raise() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CN.add(datetime(2025, 3, 14, 16), wd(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        CN.working_days_between(datetime(2025, 3, 14), local(2025, 3, 17))
    with pytest.raises(ValueError, match="timezone-aware"):
        CN.working_days_between(local(2025, 3, 14), datetime(2025, 3, 17))


def test_add_rejects_non_durations() -> None:
    with pytest.raises(TypeError):
        CN.add(local(2025, 3, 14), "1wd")  # type: ignore[arg-type]


def test_working_days_between_examples() -> None:
    assert CN.working_days_between(local(2025, 3, 14, 9), local(2025, 3, 14, 18)) == 0
    assert CN.working_days_between(local(2025, 3, 14, 9), local(2025, 3, 17, 1)) == 1
    assert CN.working_days_between(local(2025, 3, 17, 1), local(2025, 3, 14, 9)) == -1
    assert CN.working_days_between(local(2025, 1, 1), local(2026, 1, 1)) == 248  # 2025-01-01 itself is off
    assert CN.working_days_between(local(2023, 12, 31), local(2024, 12, 31)) == 251


# -- properties ---------------------------------------------------------------------------


@PROPS
@given(aware_starts, st.integers(min_value=0, max_value=400), day_units)
def test_day_deadlines_fall_at_end_of_a_working_day(start: datetime, amount: int, unit: str) -> None:
    deadline = CN.add(start, Duration(amount, unit))  # type: ignore[arg-type]
    assert deadline.tzinfo is UTC
    assert deadline >= start
    loc = deadline.astimezone(LOCAL_TZ)
    assert loc.time() == time.max
    assert CN.is_working_day(loc.date())
    oracle = CN.to_json()
    assert reference_is_working(oracle, loc.date())
    assert loc.date().isoformat() not in oracle["holidays"]
    assert loc.weekday() < 5 or loc.date().isoformat() in oracle["workdays"]


@PROPS
@given(any_calendar, aware_starts, st.integers(min_value=0, max_value=400), day_units)
def test_day_deadlines_any_calendar(cal: WorkCalendar, start: datetime, amount: int, unit: str) -> None:
    deadline = cal.add(start, Duration(amount, unit))  # type: ignore[arg-type]
    loc = deadline.astimezone(LOCAL_TZ)
    assert deadline >= start and loc.time() == time.max and cal.is_working_day(loc.date())
    start_day = start.astimezone(LOCAL_TZ).date()
    if unit == "days":
        # the first working day on or after start_day + amount
        assert loc.date() == cal.next_working_day(start_day + timedelta(days=amount))
        assert loc.date() >= start_day + timedelta(days=amount)
    elif amount > 0:
        assert brute_force_between(cal, start_day, loc.date()) == amount
    else:
        assert loc.date() == cal.next_working_day(start_day)


@PROPS
@given(any_calendar, aware_starts, st.integers(min_value=0, max_value=300), st.sampled_from(ALL_UNITS))
def test_deadlines_are_monotone_in_amount(cal: WorkCalendar, start: datetime, amount: int, unit: str) -> None:
    assert cal.add(start, Duration(amount + 1, unit)) >= cal.add(start, Duration(amount, unit))  # type: ignore[arg-type]


@PROPS
@given(any_calendar, aware_starts, st.integers(min_value=0, max_value=300))
def test_working_days_between_inverts_add(cal: WorkCalendar, start: datetime, n: int) -> None:
    start_is_working = cal.is_working_day(start.astimezone(LOCAL_TZ).date())
    assume(n > 0 or start_is_working)  # 0wd from a day off lands on the next working day, i.e. 1 day later
    assert cal.working_days_between(start, cal.add(start, wd(n))) == n


@PROPS
@given(any_calendar, aware_starts, aware_starts)
def test_working_days_between_matches_brute_force(cal: WorkCalendar, a: datetime, b: datetime) -> None:
    first, last = a.astimezone(LOCAL_TZ).date(), b.astimezone(LOCAL_TZ).date()
    result = cal.working_days_between(a, b)
    assert result == brute_force_between(cal, first, last)
    assert cal.working_days_between(b, a) == -result


@PROPS
@given(aware_starts, st.integers(min_value=0, max_value=100_000), st.sampled_from(["minutes", "hours"]))
def test_elapsed_durations_are_plain_time(start: datetime, amount: int, unit: str) -> None:
    deadline = CN.add(start, Duration(amount, unit))  # type: ignore[arg-type]
    assert deadline.tzinfo is UTC
    assert deadline - start == timedelta(**{unit: amount})


@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31)), durations)
def test_naive_start_always_raises(start: datetime, duration: Duration) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CN.add(start, duration)


# -- JSON round trips ---------------------------------------------------------------------


@given(calendars())
def test_calendar_json_round_trip(cal: WorkCalendar) -> None:
    data = cal.to_json()
    assert json.loads(json.dumps(data)) == data
    again = WorkCalendar.from_json(data)
    assert again == cal and hash(again) == hash(cal)
    assert again.to_json() == data


def test_default_calendar_json_round_trip() -> None:
    assert WorkCalendar.from_json(CN.to_json()) == CN
    file_data = json.loads(HOLIDAYS_FILE.read_text(encoding="utf-8"))
    assert CN.to_json() == {"holidays": file_data["holidays"], "workdays": file_data["workdays"]}


def test_from_json_optional_keys_and_errors() -> None:
    assert WorkCalendar.from_json({}) == PLAIN
    assert WorkCalendar.from_json({"source": "x", "holidays": ["2025-03-14"]}) == WorkCalendar([date(2025, 3, 14)])
    bad_inputs: list[object] = [
        [],
        {"holidays": "2025-03-14"},
        {"holidays": ["2025-3-14"]},
        {"holidays": ["20250314"]},
        {"holidays": ["2025-02-30"]},
        {"holidays": [20250314]},
        {"workdays": ["2025-03-15T00:00"]},
        {"holidays": ["2025-03-15"], "workdays": ["2025-03-15"]},
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError):
            WorkCalendar.from_json(bad)  # type: ignore[arg-type]


def test_constructor_rejects_overlap_and_non_dates() -> None:
    with pytest.raises(ValueError, match="2025-03-15"):
        WorkCalendar([date(2025, 3, 15)], [date(2025, 3, 15)])
    with pytest.raises(TypeError):
        WorkCalendar([local(2025, 3, 14)])
    with pytest.raises(TypeError):
        WorkCalendar(["2025-03-14"])  # type: ignore[list-item]
