"""Month close: seal a month's chargeback, and book usage that arrives for it later.

`seal_month` computes what a close records: the month's usage per group for every dimension,
the adjustments it books for earlier closed months, and every chargeback export (each grouping
in each format) with its SHA-256. The billing application stores them; a closed month's exports
are then served from the stored bytes, never recomputed.

Late usage (a fact of a closed month that reached analytics after the close: a gateway's clock
skew, a replayed batch) is the live figure of the closed month minus what was sealed minus what
later closes already booked for it. Reports of the first month after the latest close list it
as adjustment lines (`usage_period` = the closed month), and that month's close seals them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.ports.analytics import AnalyticsStore
from domain.pricing import Price
from reports.chargeback import (
    GROUPS,
    Adjustments,
    Directory,
    Usage,
    build,
    cost_center_of,
    regroup,
    usage_by_group,
)
from reports.exports import ALL_FORMATS, render_all
from reports.report_period import ReportPeriod, parse_period

DIMENSIONS = tuple(g for g in GROUPS if g != "cost_center")  # cost centres are teams, regrouped
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ClosedMonth:
    """What reports need of a close: its month and manifest (domain.period_close.PeriodClose)."""

    month: str
    manifest: dict[str, Any]


def export_name(group_by: str, fmt: str) -> str:
    return f"chargeback-by-{group_by}.{ALL_FORMATS[fmt].extension}"


def receiving_month(closes: Sequence[ClosedMonth]) -> str | None:
    """The month late usage is booked in: the one after the latest close (None: nothing closed)."""
    if not closes:
        return None
    year, month = map(int, max(c.month for c in closes).split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def books_adjustments(period: ReportPeriod, closes: Sequence[ClosedMonth]) -> bool:
    """Whether a report of `period` lists the late usage: it holds the receiving month's first day."""
    month = receiving_month(closes)
    return month is not None and period.first_day.isoformat()[:7] <= month <= period.last_day.isoformat()[:7]


def late_usage(store: AnalyticsStore, closes: Sequence[ClosedMonth], group_by: str, timezone: str,
               directory: Directory | None = None) -> Adjustments:
    """Per (closed month, group): usage of the month not sealed with it nor booked since."""
    dimension = "team" if group_by == "cost_center" else group_by
    found: Adjustments = {}
    for close in closes:
        live = usage_by_group(store, parse_period(close.month, timezone), dimension)
        sealed = _usage_rows(close.manifest["groups"][dimension])
        booked: dict[str, Usage] = {}
        for later in closes:
            if later.month > close.month:
                for row in later.manifest["adjustments"][dimension]:
                    if row[0] == close.month:
                        booked[row[1]] = booked.get(row[1], Usage()) + Usage(*row[2:])
        for group in sorted(live.keys() | sealed.keys() | booked.keys()):
            delta = live.get(group, Usage()) - sealed.get(group, Usage()) - booked.get(group, Usage())
            if delta != Usage():
                found[(close.month, group)] = delta
    return _regroup_late(found, cost_center_of(directory)) if group_by == "cost_center" else found


def seal_month(store: AnalyticsStore, month: str, timezone: str, closes: Sequence[ClosedMonth],
               directory: Directory | None = None, prices: Sequence[Price] = ()
               ) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """The manifest and the export files of `month`'s close."""
    period = parse_period(month, timezone)
    if period.month is None:
        raise ValueError(f"only a calendar month closes, not {month!r}")
    groups = {d: usage_by_group(store, period, d) for d in DIMENSIONS}
    adjustments = {d: late_usage(store, closes, d, timezone) for d in DIMENSIONS}
    # cost centres are teams summed by the registry's mapping: regrouped here, not asked again
    centre = cost_center_of(directory)
    groups_of = {**groups, "cost_center": regroup(groups["team"].items(), centre)}
    late_of = {**adjustments, "cost_center": _regroup_late(adjustments["team"], centre)}
    exports: list[tuple[str, bytes]] = []
    for group_by in GROUPS:
        late = late_of[group_by]
        report = build(period, group_by, groups_of[group_by], directory, late)
        files = render_all(store, period, group_by, report, directory, late)
        exports += [(export_name(group_by, fmt), data) for fmt, data in files.items()]
    totals = sum(groups["model"].values(), Usage()) + sum(adjustments["model"].values(), Usage())
    manifest = {
        "version": MANIFEST_VERSION, "month": period.label, "timezone": timezone,
        "from": period.start.isoformat(), "to": period.end.isoformat(),
        "requests": totals.requests, "cost_nanos": totals.cost,
        "groups": {d: [[g, *u.as_list()] for g, u in sorted(rows.items())] for d, rows in groups.items()},
        "adjustments": {d: [[m, g, *u.as_list()] for (m, g), u in sorted(rows.items())]
                        for d, rows in adjustments.items()},
        "exports": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                    for name, data in exports},
        "price_versions": versions_in_force(prices, period.start, period.end),
    }
    return manifest, exports


def versions_in_force(prices: Sequence[Price], start: datetime, end: datetime) -> dict[str, list[int]]:
    """Per model, the price versions that applied at some instant of [start, end)."""
    found: dict[str, list[int]] = {}
    by_model: dict[str, list[Price]] = {}
    for price in prices:
        by_model.setdefault(price.model, []).append(price)
    for model, versions in sorted(by_model.items()):
        ordered = sorted(versions, key=lambda p: (p.effective_from, p.version))
        for i, price in enumerate(ordered):
            until = ordered[i + 1].effective_from if i + 1 < len(ordered) else None
            if price.effective_from < end and (until is None or until > start):
                found.setdefault(model, []).append(price.version)
    return found


def _regroup_late(late: Adjustments, key: Callable[[str], str]) -> Adjustments:
    """Late usage by (closed month, `key` of its group)."""
    return regroup(late.items(), lambda month_group: (month_group[0], key(month_group[1])))


def _usage_rows(rows: list[list]) -> dict[str, Usage]:
    return {row[0]: Usage(*row[1:]) for row in rows}
