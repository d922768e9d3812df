"""Budget periods are half-open local calendar periods that tile time, across every DST change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.periods import BEGINNING, END_OF_TIME, Period, period_bounds

# Berlin and New York shift by an hour at night, Lord Howe by half an hour, Kolkata never;
# Santiago and Havana shift at midnight, so some local midnights do not exist; Apia skipped
# 30 December 2011 altogether.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Santiago", "America/Havana", "Pacific/Apia"]
CALENDAR = [Period.DAY, Period.WEEK, Period.MONTH]
MICRO = timedelta(microseconds=1)

instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.sampled_from([UTC, *map(ZoneInfo, ZONES[1:])]),
                        allow_imaginary=False)


def local_date(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def first_instant_of_its_local_date(at: datetime, tz: str) -> bool:
    """True when the instant just before `at` lies on an earlier local date."""
    return local_date(at - MICRO, tz) < local_date(at, tz)


@given(instants, st.sampled_from(ZONES), st.sampled_from(CALENDAR))
def test_a_period_is_half_open_and_contains_the_instant(at: datetime, tz: str,
                                                         period: Period) -> None:
    start, end = period_bounds(period, at, tz)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert start <= at < end
    assert period_bounds(period, start, tz) == (start, end)
    assert period_bounds(period, end - MICRO, tz) == (start, end)
    assert period_bounds(period, start - MICRO, tz)[1] == start


@given(instants, st.sampled_from(ZONES), st.sampled_from(CALENDAR))
def test_consecutive_periods_tile_time(at: datetime, tz: str, period: Period) -> None:
    start, end = period_bounds(period, at, tz)
    next_start, next_end = period_bounds(period, end, tz)
    assert next_start == end < next_end


@given(instants, st.sampled_from(ZONES), st.sampled_from(CALENDAR))
def test_periods_begin_at_the_first_instant_of_a_local_calendar_day(at: datetime, tz: str,
                                                                     period: Period) -> None:
    start, end = period_bounds(period, at, tz)
    assert first_instant_of_its_local_date(start, tz)
    assert first_instant_of_its_local_date(end, tz)
    first, day = local_date(start, tz), local_date(at, tz)
    if period is Period.DAY:
        assert first == day
    elif period is Period.WEEK:
        assert first.weekday() == 0 and 0 <= (day - first).days < 7
    else:
        assert first.day == 1 and (first.year, first.month) == (day.year, day.month)


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("period", CALENDAR)
def test_two_years_of_periods_tile_without_gap_or_overlap(tz: str, period: Period) -> None:
    start, end = period_bounds(period, datetime(2010, 12, 20, tzinfo=UTC), tz)
    seen = 0
    while start < datetime(2012, 12, 31, tzinfo=UTC):
        next_start, next_end = period_bounds(period, end, tz)
        assert next_start == end
        start, end = next_start, next_end
        seen += 1
    assert seen >= {Period.DAY: 730, Period.WEEK: 104, Period.MONTH: 24}[period]


@pytest.mark.parametrize(("tz", "day", "hours"), [
    ("Europe/Berlin", date(2025, 3, 30), 23),
    ("Europe/Berlin", date(2025, 10, 26), 25),
    ("America/New_York", date(2025, 3, 9), 23),
    ("America/New_York", date(2025, 11, 2), 25),
    ("Australia/Lord_Howe", date(2025, 4, 6), 24.5),
    ("Australia/Lord_Howe", date(2025, 10, 5), 23.5),
    ("Asia/Kolkata", date(2025, 3, 30), 24),
    ("Pacific/Apia", date(2011, 12, 29), 24),
])
def test_days_are_as_long_as_the_local_clock_says(tz: str, day: date, hours: float) -> None:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))
    start, end = period_bounds(Period.DAY, noon, tz)
    assert end - start == timedelta(hours=hours)


def test_apia_skipped_the_thirtieth_of_december_2011() -> None:
    end_of_29th = period_bounds(Period.DAY, datetime(2011, 12, 29, 12, tzinfo=ZoneInfo("Pacific/Apia")),
                                "Pacific/Apia")[1]
    assert local_date(end_of_29th, "Pacific/Apia") == date(2011, 12, 31)


def test_no_period_spans_all_time() -> None:
    assert period_bounds(Period.NONE, datetime(2025, 5, 5, tzinfo=UTC)) == (BEGINNING, END_OF_TIME)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds(Period.DAY, datetime(2025, 5, 5), "UTC")
