"""Serving chargeback files, sealed or live, and closing a month: the reports' use of the billing store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from domain.errors import DomainError
from domain.period_close import PeriodClose
from domain.ports.analytics import AnalyticsStore
from domain.pricing import Price
from domain.services.billing import AlreadyClosedError, Billing
from reports.chargeback import Directory
from reports.exports import render
from reports.month_close import ClosedMonth, books_adjustments, export_name, late_usage, seal_month
from reports.report_period import PeriodError, ReportPeriod, parse_period


class CloseRefusedError(DomainError):
    """A month that may not be closed (yet); the message says why."""


def closed_months(billing: Billing) -> list[ClosedMonth]:
    return [ClosedMonth(c.month, c.manifest) for c in billing.closes()]


def chargeback_file(store: AnalyticsStore, billing: Billing | None, period: ReportPeriod, group_by: str,
                    fmt: str, directory: Directory | None = None) -> tuple[bytes, bool]:
    """The export's bytes, and whether they are sealed: a closed month's are its stored files.
    Without a billing store every period is open."""
    if billing is None:
        return render(store, period, group_by, fmt, directory), False
    if period.month is not None and billing.closed(period.month) is not None:
        sealed = billing.export(period.month, export_name(group_by, fmt))
        if sealed is not None:
            return sealed.data, True
    closes = closed_months(billing)
    late = late_usage(store, closes, group_by, period.timezone, directory) \
        if books_adjustments(period, closes) else None
    return render(store, period, group_by, fmt, directory, late), False


def close_month(store: AnalyticsStore, billing: Billing, month: str, timezone: str, now: datetime,
                closed_by: str, directory: Directory | None = None, prices: Sequence[Price] = ()
                ) -> PeriodClose:
    """Seals `month`: it must have ended, and be later than every month closed before it (late
    usage of a closed month is booked forward, so closes go forward)."""
    try:
        period = parse_period(month, timezone)
    except PeriodError as exc:
        raise CloseRefusedError(str(exc)) from None
    if period.month != month:  # one spelling per month: the close's id is derived from it
        raise CloseRefusedError(f"{month!r} is not a month: give YYYY-MM, e.g. 2026-03")
    if now < period.end:
        raise CloseRefusedError(f"{month} has not ended yet (it ends {period.end.isoformat()}); "
                                "close it once it has, after the last gateway's usage is in")
    closes = closed_months(billing)
    if any(c.month == month for c in closes):
        raise AlreadyClosedError(f"{month} is already closed")
    later = [c.month for c in closes if c.month > month]
    if later:
        raise CloseRefusedError(f"{month} comes before {later[-1]}, which is closed: months close in "
                                "order, and usage that arrived late for it is booked in the open month")
    manifest, exports = seal_month(store, month, timezone, closes, directory, prices)
    return billing.seal(month, closed_by, manifest, exports)
