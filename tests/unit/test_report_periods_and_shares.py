"""Report periods as finance users type them, and cost shares that add up to 100.00."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reports.chargeback import shares_of
from reports.report_period import PeriodError, parse_period


def test_a_month_runs_from_local_midnight_on_the_first_to_the_next_first():
    period = parse_period("2024-03", "Europe/Paris")
    assert (period.first_day, period.last_day) == (date(2024, 3, 1), date(2024, 3, 31))
    assert period.month == "2024-03"
    assert period.start == datetime(2024, 2, 29, 23, tzinfo=UTC)
    assert period.end == datetime(2024, 3, 31, 22, tzinfo=UTC)  # after the spring DST change


def test_a_quarter_covers_its_three_months_and_is_not_a_month():
    period = parse_period("2024-q4", "America/New_York")
    assert (period.label, period.first_day, period.last_day, period.month) == (
        "2024-Q4", date(2024, 10, 1), date(2024, 12, 31), None)


def test_a_range_of_days_includes_both_days():
    period = parse_period(" 2024-02-28..2024-03-01 ", "UTC")
    assert (period.start, period.end) == (datetime(2024, 2, 28, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))


def test_a_day_whose_midnight_does_not_exist_starts_when_the_day_does():
    # Santiago moved its clocks from 00:00 to 01:00 on 2024-09-08: that day began at 01:00 local
    period = parse_period("2024-09-08..2024-09-08", "America/Santiago")
    assert period.start == datetime(2024, 9, 8, 4, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["2024-00", "2024-13", "24-03", "2024-Q0", "2024-Q5", "2024-3", "",
                                  "2024-03-02..2024-03-01", "2024-02-30..2024-03-01", "0001-01",
                                  "2024-03-01..2099-01-01", "2024-03; DROP TABLE usage"])
def test_a_period_that_cannot_be_read_says_what_to_send(spec):
    with pytest.raises(PeriodError, match="period"):
        parse_period(spec, "UTC")


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(PeriodError, match="IANA"):
        parse_period("2024-03", "Mars/Olympus")


@given(st.lists(st.integers(min_value=0, max_value=10**15), min_size=1, max_size=60))
def test_shares_add_up_to_exactly_100_and_each_is_within_a_hundredth_of_the_exact_share(costs):
    shares = shares_of(costs)
    total = sum(costs)
    if total == 0:
        assert set(shares) == {Decimal("0.00")}
        return
    assert sum(shares) == Decimal("100.00")
    for cost, share in zip(costs, shares, strict=True):
        assert abs(Fraction(share) - Fraction(100 * cost, total)) < Fraction(1, 100)
        assert share.as_tuple().exponent == -2
