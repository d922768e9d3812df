"""A chargeback as a table: its rows then a totals row, as exact text or as a typed polars frame."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from domain.money import from_nanos
from reports.chargeback import Chargeback, Usage

if TYPE_CHECKING:
    import polars as pl

TOTAL = "TOTAL"


def columns(report: Chargeback) -> list[str]:
    return [report.id_column, "name", "usage_period", "requests", "input_tokens", "cached_input_tokens",
            "output_tokens", "total_tokens", "cost_usd", "share_percent"]


def _values(group: str, name: str, period: str, usage: Usage, share: Decimal) -> list:
    return [group, name, period, usage.requests, usage.prompt_tokens, usage.cached_tokens,
            usage.completion_tokens, usage.total_tokens, from_nanos(usage.cost), share]


def rows(report: Chargeback, with_totals: bool = True) -> list[list]:
    """One list per row in `columns` order: ids and names as text, the period the usage happened in
    (the report's, or a closed month's for an adjustment), counts as int, cost as an exact Decimal
    of USD, share as a Decimal percent; the totals row last."""
    label = report.period.label
    body = [_values(row.group, row.name, row.usage_period or label, row.usage, row.share)
            for row in report.rows]
    if with_totals:
        share = Decimal("100.00") if any(row.share for row in report.rows) else Decimal("0.00")
        body.append(_values(TOTAL, "", label, report.totals, share))
    return body


def frame(report: Chargeback, with_totals: bool = True) -> pl.DataFrame:
    """Typed columns: money as Decimal(38, 9) so no reader ever sees a binary float."""
    import polars as pl  # here, not at import: the JSON and CSV writers need no polars

    names = columns(report)
    schema = {name: pl.Utf8 for name in names[:3]} | {name: pl.Int64 for name in names[3:8]}
    schema |= {"cost_usd": pl.Decimal(38, 9), "share_percent": pl.Decimal(6, 2)}  # nano-dollars exactly
    return pl.DataFrame(rows(report, with_totals), schema=schema, orient="row")


def money_text(value: Decimal) -> str:
    """Exact USD text with at least two decimals ("12.50", "0.000000123")."""
    text = format(value, "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
