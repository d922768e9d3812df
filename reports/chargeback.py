"""Chargeback: what each user, key, team, cost centre, model or application used in a period.

Built from the analytics store's figures (the rollups answer a month in milliseconds), so its
totals are the analytics totals, which `meterline reconcile` holds equal to the ledger's. Money
stays integer nano-units here; writers format it. Shares of the total cost are percentages with
two decimals that add up to exactly 100.00 (largest remainder), because a finance team's
spreadsheet checks that they do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, TypeVar

from domain.ports.analytics import AnalyticsStore
from domain.usage_figures import AnalyticsQuery, Figures
from reports.report_period import ReportPeriod

GROUPS = ("user", "key", "team", "cost_center", "model", "application")
NONE_LABEL = {"team": "(no team)", "cost_center": "(no cost centre)", "application": "(untagged)"}
BASIS_POINTS = 10_000  # a share is counted in hundredths of a percent
K = TypeVar("K")  # what usage is grouped by: a group's id, or (closed month, group id)


class Directory(Protocol):
    """Names for the ids usage facts carry, from the registry (all optional: a group without a
    name is shown by its id)."""

    def key_name(self, key_id: str) -> str | None: ...

    def team_name(self, team_id: str) -> str | None: ...

    def cost_center(self, team_id: str) -> str | None: ...


@dataclass(frozen=True)
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: int = 0  # nano-units

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.requests + other.requests, self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.cached_tokens + other.cached_tokens, self.cost + other.cost)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.requests - other.requests, self.prompt_tokens - other.prompt_tokens,
                     self.completion_tokens - other.completion_tokens,
                     self.cached_tokens - other.cached_tokens, self.cost - other.cost)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_list(self) -> list[int]:
        return [self.requests, self.prompt_tokens, self.completion_tokens, self.cached_tokens, self.cost]

    @classmethod
    def of(cls, figures: Figures) -> Usage:
        return cls(figures.requests, figures.prompt_tokens, figures.completion_tokens,
                   figures.cached_tokens, figures.cost)


@dataclass(frozen=True)
class ChargebackRow:
    group: str       # the id as facts carry it ("" for no team / no application tag)
    name: str        # what people call it: a key's or team's name, else the id
    usage: Usage
    share: Decimal   # percent of the period's total cost, two decimals
    usage_period: str | None = None  # an adjustment's closed month (late usage); None: this period


@dataclass(frozen=True)
class Chargeback:
    period: ReportPeriod
    group_by: str
    rows: tuple[ChargebackRow, ...]
    totals: Usage = field(default_factory=Usage)

    @property
    def id_column(self) -> str:
        return f"{self.group_by}_id" if self.group_by in ("user", "key", "team") else self.group_by


Adjustments = dict[tuple[str, str], Usage]  # (closed month, group) -> late usage booked here


def chargeback(store: AnalyticsStore, period: ReportPeriod, group_by: str,
               directory: Directory | None = None, adjustments: Adjustments | None = None,
               source: str = "auto") -> Chargeback:
    """The period's usage per group, most expensive first (ties by id), then any adjustments.
    `source` forces a table of the analytics store (benchmarks); the answer is the same."""
    return build(period, group_by, usage_by_group(store, period, group_by, directory, source), directory,
                 adjustments)


def usage_by_group(store: AnalyticsStore, period: ReportPeriod, group_by: str,
                   directory: Directory | None = None, source: str = "auto") -> dict[str, Usage]:
    if group_by not in GROUPS:
        raise ValueError(f"group_by {group_by!r} is not one of {', '.join(GROUPS)}")
    dimension = "team" if group_by == "cost_center" else group_by
    figures = store.figures(AnalyticsQuery(period.start, period.end, group_by=(dimension,),
                                           timezone=period.timezone, latency=False, source=source))
    return regroup(((f.group[0], Usage.of(f)) for f in figures if f.requests or f.cost),
                   cost_center_of(directory) if group_by == "cost_center" else None)


def build(period: ReportPeriod, group_by: str, by_group: dict[str, Usage],
          directory: Directory | None = None, adjustments: Adjustments | None = None) -> Chargeback:
    ordered = sorted(by_group.items(), key=lambda item: (-item[1].cost, item[0]))
    late = sorted((adjustments or {}).items(), key=lambda item: item[0])
    lines = [(group, usage, None) for group, usage in ordered]
    lines += [(group, usage, month) for (month, group), usage in late]
    totals = sum((usage for _, usage, _ in lines), Usage())
    shares = shares_of([usage.cost for _, usage, _ in lines])
    rows = tuple(ChargebackRow(group, name_of(group_by, group, directory), usage, share, month)
                 for (group, usage, month), share in zip(lines, shares, strict=True))
    return Chargeback(period, group_by, rows, totals)


def shares_of(costs: list[int]) -> list[Decimal]:
    """Each cost's percent of the total, in hundredths, summing to exactly 100.00 (the largest
    remainders get the spare hundredths; ties to the earlier row). All zero when nothing cost.
    A negative cost (an adjustment that takes usage back) has no share: 0.00."""
    total = sum(cost for cost in costs if cost > 0)
    if total <= 0:
        return [Decimal("0.00")] * len(costs)
    exact = [max(cost, 0) * BASIS_POINTS for cost in costs]
    floors = [value // total for value in exact]
    spare = BASIS_POINTS - sum(floors)
    by_remainder = sorted(range(len(costs)), key=lambda i: (-(exact[i] % total), i))
    for i in by_remainder[:spare]:
        floors[i] += 1
    return [Decimal(points).scaleb(-2) for points in floors]


def regroup(pairs: Iterable[tuple[K, Usage]], key: Callable[[K], K] | None) -> dict[K, Usage]:
    """The usage summed by `key` of each group (a team's cost centre; a closed month's group)."""
    grouped: dict[K, Usage] = {}
    for group, usage in pairs:
        target = key(group) if key else group
        grouped[target] = grouped.get(target, Usage()) + usage
    return grouped


def cost_center_of(directory: Directory | None) -> Callable[[str], str]:
    def cost_center(team_id: str) -> str:
        return (directory.cost_center(team_id) if directory and team_id else None) or ""
    return cost_center


def name_of(group_by: str, group: str, directory: Directory | None) -> str:
    if not group:
        return NONE_LABEL.get(group_by, "(none)")
    if directory is not None and group_by == "key":
        return directory.key_name(group) or group
    if directory is not None and group_by == "team":
        return directory.team_name(group) or group
    return group
