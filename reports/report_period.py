"""The period a report covers, from what a finance user types: a month, a quarter, or days.

    2026-03                  the calendar month
    2026-Q1                  the calendar quarter (January to March)
    2026-01-01..2026-02-15   calendar days, both included

Each is a half-open [start, end) in UTC, from midnight to midnight in the billing time zone, so
a report and the budget periods agree on which day a request fell in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

from domain.periods import Period, is_time_zone, period_bounds

MAX_DAYS = 3_660  # ten years: past any chargeback a finance team asks for in one go
EXAMPLES = "give YYYY-MM (2026-03), YYYY-Qn (2026-Q1) or FROM..TO as days (2026-01-01..2026-02-15)"


class PeriodError(ValueError):
    """A period that cannot be read; its message says what to send instead."""


@dataclass(frozen=True)
class ReportPeriod:
    label: str          # as given, normalised ("2026-03", "2026-Q1", "2026-01-01..2026-02-15")
    first_day: date     # local calendar days, both included
    last_day: date
    timezone: str

    @cached_property  # a frozen dataclass's own __dict__: computed once, never changed
    def start(self) -> datetime:
        return _midnight(self.first_day, self.timezone)

    @cached_property
    def end(self) -> datetime:
        return _midnight(self.last_day + timedelta(days=1), self.timezone)

    @property
    def month(self) -> str | None:
        """YYYY-MM when the period is exactly one calendar month (the unit a month close seals)."""
        return self.label if re.fullmatch(r"[0-9]{4}-[0-9]{2}", self.label) else None


def parse_period(spec: str, timezone: str = "UTC") -> ReportPeriod:
    if not is_time_zone(timezone):
        raise PeriodError(f"time zone {timezone!r} is not an IANA zone name such as Europe/Paris")
    text = (spec or "").strip()
    if not text.isascii():  # \d and int() read any script's digits: "٢٠٢٦-03" would pass as 2026-03
        raise PeriodError(f"period {spec[:40]!r} has characters other than ASCII; {EXAMPLES}")
    if found := re.fullmatch(r"(\d{4})-(\d{2})", text):
        year, month = int(found[1]), int(found[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"period {spec!r}: month {month} is not 01 to 12; {EXAMPLES}")
        first = _day(year, month, 1, spec)
        return ReportPeriod(f"{year:04d}-{month:02d}", first, _month_end(first), timezone)
    if found := re.fullmatch(r"(\d{4})-[Qq]([1-4])", text):
        year, quarter = int(found[1]), int(found[2])
        first = _day(year, 3 * quarter - 2, 1, spec)
        last = _month_end(_day(year, 3 * quarter, 1, spec))
        return ReportPeriod(f"{year:04d}-Q{quarter}", first, last, timezone)
    if found := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", text):
        first, last = _iso_day(found[1], spec), _iso_day(found[2], spec)
        if last < first:
            raise PeriodError(f"period {spec!r} ends before it starts; {EXAMPLES}")
        if (last - first).days >= MAX_DAYS:
            raise PeriodError(f"period {spec!r} is longer than {MAX_DAYS} days; report it in parts")
        return ReportPeriod(f"{first.isoformat()}..{last.isoformat()}", first, last, timezone)
    raise PeriodError(f"period {spec!r} is not understood; {EXAMPLES}")


def _day(year: int, month: int, day: int, spec: str) -> date:
    if not 1970 <= year <= 9998:
        raise PeriodError(f"period {spec!r}: year {year} is outside 1970 to 9998; {EXAMPLES}")
    return date(year, month, day)


def _iso_day(text: str, spec: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"period {spec!r}: {text} is not a calendar day; {EXAMPLES}") from None
    return _day(day.year, day.month, day.day, spec)


def _month_end(first: date) -> date:
    following = date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)
    return following - timedelta(days=1)


def _midnight(day: date, timezone: str) -> datetime:
    """The start of a local day as the budget periods define it (domain.periods): noon always
    exists locally, and the day holding it starts where a DST change at midnight puts it."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(timezone))
    return period_bounds(Period.DAY, noon, timezone)[0]
