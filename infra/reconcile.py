"""`meterline reconcile`: the ledger's recorded facts against analytics, per user, key, team and model.

The ledger is the source of truth. Both sides are summed over one calendar month in the
billing time zone, [start, end) in UTC; any difference, down to one nano-unit, is reported.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from domain.periods import Period, period_bounds
from domain.ports.analytics import AnalyticsStore, UsageQuery
from domain.usage import RequestMetered

GROUPINGS = ("user", "key", "team", "model")  # as UsageQuery.group_by names them
_FIELD = {"user": "user_id", "key": "key_id", "team": "team_id", "model": "model"}


@dataclass(frozen=True)
class Sums:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0  # nano-units

    def __add__(self, other: Sums) -> Sums:
        return Sums(self.requests + other.requests, self.prompt_tokens + other.prompt_tokens,
                    self.completion_tokens + other.completion_tokens, self.cost + other.cost)

    def __sub__(self, other: Sums) -> Sums:
        return Sums(self.requests - other.requests, self.prompt_tokens - other.prompt_tokens,
                    self.completion_tokens - other.completion_tokens, self.cost - other.cost)


Group = tuple[str, str]  # (grouping, value): ("team", "red"); a fact without a team is ("team", "")
Totals = dict[Group, Sums]


@dataclass(frozen=True)
class Row:
    """One group on both sides."""

    grouping: str
    group: str
    ledger: Sums
    analytics: Sums

    @property
    def difference(self) -> Sums:
        return self.analytics - self.ledger

    @property
    def matches(self) -> bool:
        return self.ledger == self.analytics


def month(period: str | None, tz: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The calendar month `period` (YYYY-MM; default: the current one) in `tz`, as [start, end) in UTC."""
    if period is None:
        return period_bounds(Period.MONTH, now or datetime.now(UTC), tz)
    found = re.fullmatch(r"(\d{4})-(\d{2})", period)
    if found is None or not 1 <= int(found[2]) <= 12:
        raise ValueError(f"--period {period!r}: give a month as YYYY-MM, e.g. 2026-03")
    first = datetime(int(found[1]), int(found[2]), 1, tzinfo=ZoneInfo(tz))
    return period_bounds(Period.MONTH, first, tz)


def ledger_totals(facts: Iterable[RequestMetered], start: datetime, end: datetime) -> Totals:
    """Sums of the facts in [start, end) per group; a fact counts the `requests` it says (0 on a
    stream's later parts), so a request metered in parts counts once."""
    totals: Totals = {}
    for fact in facts:
        if not start <= fact.occurred_at < end:
            continue
        sums = Sums(fact.requests, fact.prompt_tokens, fact.completion_tokens, fact.cost)
        for grouping in GROUPINGS:
            group = (grouping, getattr(fact, _FIELD[grouping]) or "")
            totals[group] = totals.get(group, Sums()) + sums
    return totals


def analytics_totals(store: AnalyticsStore, start: datetime, end: datetime) -> Totals:
    """The analytics store's totals in [start, end) per group."""
    totals: Totals = {}
    for grouping in GROUPINGS:
        for row in store.usage(UsageQuery(start, end, group_by=grouping)):
            totals[(grouping, row.group)] = Sums(row.requests, row.prompt_tokens,
                                                 row.completion_tokens, row.cost)
    return totals


def compare(ledger: Totals, analytics: Totals) -> list[Row]:
    """Every group of either side, ordered by grouping then group; a missing group counts zeros."""
    order = {grouping: i for i, grouping in enumerate(GROUPINGS)}
    groups = sorted(ledger.keys() | analytics.keys(), key=lambda g: (order.get(g[0], len(order)), g))
    return [Row(grouping, group, ledger.get((grouping, group), Sums()),
                analytics.get((grouping, group), Sums())) for grouping, group in groups]


def differences(ledger: Totals, analytics: Totals) -> list[Row]:
    """The groups whose totals differ between the two sides."""
    return [row for row in compare(ledger, analytics) if not row.matches]


def reconcile(facts: Iterable[RequestMetered], store: AnalyticsStore,
              start: datetime, end: datetime) -> list[Row]:
    """Every group of the period on both sides."""
    return compare(ledger_totals(facts, start, end), analytics_totals(store, start, end))


MAX_LISTED = 50


def report(rows: list[Row], start: datetime, end: datetime, tz: str, console: Console,
           what: str | None = None) -> int:
    """Prints the table and the verdict; returns the exit code (1 when any group differs).
    `what` names the span compared (default: the month of `start`)."""
    what = what or f"{start.astimezone(ZoneInfo(tz)):%Y-%m} ({tz})"
    table = Table(title=f"ledger vs analytics, {what}: [{start.isoformat()}, {end.isoformat()})")
    for name in ("by", "group", "requests L/A", "prompt L/A", "completion L/A",
                 "cost L/A (nano)", "difference (A-L)", ""):
        table.add_column(name, justify="left" if name in ("by", "group", "") else "right")
    # A month of a thousand users and keys is thousands of groups: beyond a screenful, list the
    # differing ones only (rendering 6,000 rows took rich longer than the rebuild that preceded it).
    listed = rows if len(rows) <= MAX_LISTED else [row for row in rows if not row.matches][:MAX_LISTED]
    for row in listed:
        led, ana, diff = row.ledger, row.analytics, row.difference
        table.add_row(row.grouping, row.group or "(none)", f"{led.requests}/{ana.requests}",
                      f"{led.prompt_tokens}/{ana.prompt_tokens}",
                      f"{led.completion_tokens}/{ana.completion_tokens}", f"{led.cost}/{ana.cost}",
                      _describe(diff), "ok" if row.matches else "DIFFERS")
    if listed:
        console.print(table)
    if len(listed) < len(rows):
        console.print(f"({len(rows) - len(listed)} of {len(rows)} groups not listed: only differing "
                      f"groups are, up to {MAX_LISTED}, when there are more than {MAX_LISTED})")
    differing = [row for row in rows if not row.matches]
    if not differing:
        console.print(f"reconciled: {len(rows)} groups match to the nano-unit")
        return 0
    names = ", ".join(f"{row.grouping} {row.group or '(none)'!r}" for row in differing)
    console.print(f"MISMATCH: {len(differing)} of {len(rows)} groups differ: {names}", highlight=False)
    return 1


def _describe(diff: Sums) -> str:
    parts = [f"{name} {value:+d}" for name, value in vars(diff).items() if value]
    return ", ".join(parts) or "0"


def open_analytics(settings, rollup_timezone: str = "UTC") -> AnalyticsStore:
    """The analytics of this data directory: the projector's, over its socket, while `meterline up`
    runs (embedded chDB allows one process per directory); else the configured store itself."""
    from infra.container import build_analytics
    from infra.runner import analytics_socket
    if settings.analytics_url is None:
        path = analytics_socket(settings.data_dir)
        if _listening(path):
            from adapters.analytics.remote import RemoteAnalytics
            return RemoteAnalytics(path, wait_s=2)
    return build_analytics(settings, rollup_timezone=rollup_timezone)


def _listening(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(path))
        except OSError:  # a socket left by a process that died
            return False
    return True


def run(settings, config, period: str | None, console: Console) -> int:
    """What `meterline reconcile` does: opens the ledger and analytics, compares, reports."""
    from adapters.clock import SystemClock
    from adapters.eventstore.environments import open_applications
    from infra.container import billing_timezone, event_store_env
    tz = billing_timezone(settings, config)
    start, end = month(period, tz)
    registry, ledger = open_applications(event_store_env(settings), SystemClock(), tz)
    analytics = open_analytics(settings, rollup_timezone=tz)
    try:
        rows = reconcile(ledger.metered_facts(), analytics, start, end)
    finally:
        for closeable in (registry, ledger, analytics):
            getattr(closeable, "close", lambda: None)()
    return report(rows, start, end, tz, console)
