"""Re-rating: a period's usage priced under another price book, beside what it actually cost.

A pure function of the analytics figures (per group and model: requests and token counts) and a
price book. Each (group, model) line is rated once, rounded half to even to the nano-dollar, as
an invoice line is; the actual cost was rated per request, so re-rating under the very prices
that rated the facts can differ from the actual by at most half a nano-dollar per request of the
line. Cache-write and reasoning tokens are priced as input and output tokens (the figures count
them there). The same inputs give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from domain.money import from_nanos
from domain.ports.analytics import AnalyticsStore
from domain.pricing import Usage as Tokens
from domain.usage_figures import AnalyticsQuery
from reports.chargeback import GROUPS, Directory, Usage, cost_center_of, name_of
from reports.percent import percent
from reports.price_book_spec import PriceBookError, PriceBookSpec
from reports.report_period import ReportPeriod
from reports.writers.csv_text import csv_bytes
from reports.writers.table import money_text


@dataclass(frozen=True)
class RerateRow:
    group: str
    name: str
    usage: Usage       # actual, as metered
    rerated: int       # nano-dollars under the price book

    @property
    def difference(self) -> int:
        return self.rerated - self.usage.cost


@dataclass(frozen=True)
class Rerating:
    period: ReportPeriod
    group_by: str
    price_book: str
    rows: tuple[RerateRow, ...]
    kept_actual: tuple[str, ...]  # models the price book does not price: their actual cost is kept

    @property
    def actual(self) -> int:
        return sum(row.usage.cost for row in self.rows)

    @property
    def rerated(self) -> int:
        return sum(row.rerated for row in self.rows)


def rerate(store: AnalyticsStore, period: ReportPeriod, group_by: str, book: PriceBookSpec,
           directory: Directory | None = None) -> Rerating:
    if group_by not in GROUPS:
        raise ValueError(f"group_by {group_by!r} is not one of {', '.join(GROUPS)}")
    dimension = "team" if group_by == "cost_center" else group_by
    dimensions = (dimension,) if dimension == "model" else (dimension, "model")
    figures = store.figures(AnalyticsQuery(period.start, period.end, group_by=dimensions,
                                           timezone=period.timezone, latency=False))
    to_group = cost_center_of(directory) if group_by == "cost_center" else (lambda g: g)
    actual: dict[str, Usage] = {}
    rerated: dict[str, int] = {}
    kept: set[str] = set()
    for f in figures:
        if not (f.requests or f.cost):
            continue
        group, model = to_group(f.group[0]), f.group[-1]
        actual[group] = actual.get(group, Usage()) + Usage.of(f)
        price = book.price_for(model)
        if price is None:
            kept.add(model)
            line = f.cost
        else:
            line = price.cost(Tokens(f.prompt_tokens, f.completion_tokens, f.cached_tokens))
        rerated[group] = rerated.get(group, 0) + line
    unknown = book.unknown(f.group[-1] for f in figures)
    if unknown:
        raise PriceBookError(f"price_book names {', '.join(repr(m[:60]) for m in unknown[:5])}, which had no "
                             "usage in the period and is not in the catalogue (GET /api/admin/models): check "
                             "the spelling")
    rows = tuple(RerateRow(g, name_of(group_by, g, directory), actual[g], rerated[g])
                 for g in sorted(actual, key=lambda g: (-actual[g].cost, g)))
    return Rerating(period, group_by, book.label, rows, tuple(sorted(kept)))


COLUMNS = ("name", "requests", "total_tokens", "actual_cost_usd", "rerated_cost_usd", "difference_usd",
           "difference_percent")


def _percent(difference: int, actual: int) -> str | None:
    share = percent(difference, actual)
    return None if share is None else format(share, "f")


def _values(row_name: str, usage: Usage, rerated: int) -> list:
    return [row_name, usage.requests, usage.total_tokens, money_text(from_nanos(usage.cost)),
            money_text(from_nanos(rerated)), money_text(from_nanos(rerated - usage.cost)),
            _percent(rerated - usage.cost, usage.cost)]


def _id_column(report: Rerating) -> str:
    return f"{report.group_by}_id" if report.group_by in ("user", "key", "team") else report.group_by


def write_json(report: Rerating) -> bytes:
    head = (_id_column(report), *COLUMNS)
    totals = sum((row.usage for row in report.rows), Usage())
    body = {"period": report.period.label, "from": report.period.start.isoformat(),
            "to": report.period.end.isoformat(), "timezone": report.period.timezone,
            "group_by": report.group_by, "price_book": report.price_book, "currency": "USD",
            "models_kept_at_actual_cost": list(report.kept_actual),
            "rows": [dict(zip(head, [row.group, *_values(row.name, row.usage, row.rerated)], strict=True))
                     for row in report.rows],
            "totals": dict(zip(COLUMNS[1:], _values("", totals, report.rerated)[1:], strict=True))}
    return json.dumps(body, ensure_ascii=False, indent=1).encode() + b"\n"


def write_csv(report: Rerating) -> bytes:
    totals = sum((row.usage for row in report.rows), Usage())
    rows = [[row.group, *_values(row.name, row.usage, row.rerated)] for row in report.rows]
    rows.append(["TOTAL", *_values("", totals, report.rerated)])
    return csv_bytes((_id_column(report), *COLUMNS), rows)


WRITERS = {"json": (write_json, "application/json"), "csv": (write_csv, "text/csv; charset=utf-8")}
