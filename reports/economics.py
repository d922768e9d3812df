"""Model economics: per model, what it earned in internal chargeback against what its GPUs cost.

GPU cost = the model's `gpu_cost_per_hour` (the price version in force) x its serving hours.
Serving hours are measured from the facts: in each hour of the period, the time the model's
requests spent being served (their latencies summed) divided by the number the server runs at
once (`concurrency`), capped at the whole hour: a GPU cannot be busier than the clock. A model
without a GPU cost has none (null), not zero, so its margin is unknown rather than 100 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from domain.money import divide_rounded
from domain.ports.analytics import AnalyticsStore
from domain.pricing import Price
from domain.usage_figures import AnalyticsQuery
from reports.chargeback import Usage
from reports.percent import percent
from reports.report_period import ReportPeriod

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class ModelEconomics:
    model: str
    usage: Usage
    serving_hours: Fraction
    gpu_cost: int | None  # nano-dollars; None: no GPU cost known for the model

    @property
    def margin(self) -> int | None:
        return None if self.gpu_cost is None else self.usage.cost - self.gpu_cost

    @property
    def margin_percent(self) -> Decimal | None:
        return None if self.margin is None else percent(self.margin, self.usage.cost)


def economics(store: AnalyticsStore, period: ReportPeriod, prices: Sequence[Price],
              concurrency: int = 1) -> list[ModelEconomics]:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    query = AnalyticsQuery(period.start, period.end, group_by=("model", "hour"), timezone="UTC",
                           latency=False)
    usage: dict[str, Usage] = {}
    busy: dict[str, Fraction] = {}
    cost: dict[str, Fraction] = {}  # exact, rounded once per model
    known: dict[str, bool] = {}
    for f in store.figures(query):
        model, hour = f.group[0], datetime.fromisoformat(f.group[1])
        usage[model] = usage.get(model, Usage()) + Usage.of(f)
        hours = min(Fraction(f.latency_ms_sum, concurrency * HOUR_MS), Fraction(1))
        busy[model] = busy.get(model, Fraction(0)) + hours
        rate = _gpu_rate(prices, model, hour)
        known[model] = known.get(model, False) or rate is not None
        cost[model] = cost.get(model, Fraction(0)) + (rate or 0) * hours
    return [ModelEconomics(m, usage[m], busy[m], _rounded(cost[m]) if known[m] else None)
            for m in sorted(usage, key=lambda m: (-usage[m].cost, m))]


def _rounded(exact: Fraction) -> int:
    return divide_rounded(exact.numerator, exact.denominator)


def _gpu_rate(prices: Sequence[Price], model: str, at: datetime) -> int | None:
    started = [p for p in prices if p.model == model and p.effective_from <= at]
    if not started:
        return None
    return max(started, key=lambda p: (p.effective_from, p.version)).gpu_cost_per_hour
