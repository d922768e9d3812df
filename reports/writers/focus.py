"""FinOps FOCUS 1.2 cost and usage rows: one per group and day of the period, as CSV or Parquet.

The mandatory columns, typed as the specification says (amounts as decimals, exact to the
nano-dollar; dates as UTC instants), and Meterline's ids in `Tags` (a JSON object), so a FinOps
tool can read Meterline beside its cloud bills. Late usage booked for a closed month is a row per
group with ChargeClass "Correction" whose charge period is that closed month.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl

from domain.money import from_nanos
from domain.ports.analytics import AnalyticsStore
from domain.usage_figures import AnalyticsQuery
from reports.chargeback import Adjustments, Directory, Usage, cost_center_of, name_of
from reports.report_period import ReportPeriod, parse_period
from reports.writers.csv_text import csv_bytes

ACCOUNT_ID, ACCOUNT_NAME, ISSUER = "meterline", "Meterline", "Meterline"
MONEY = pl.Decimal(38, 9)
COLUMNS = {
    "BilledCost": MONEY, "BillingAccountId": pl.Utf8, "BillingAccountName": pl.Utf8,
    "BillingCurrency": pl.Utf8, "BillingPeriodStart": pl.Datetime("us", "UTC"),
    "BillingPeriodEnd": pl.Datetime("us", "UTC"), "ChargeCategory": pl.Utf8, "ChargeClass": pl.Utf8,
    "ChargeDescription": pl.Utf8, "ChargePeriodStart": pl.Datetime("us", "UTC"),
    "ChargePeriodEnd": pl.Datetime("us", "UTC"), "ConsumedQuantity": pl.Decimal(38, 0),
    "ConsumedUnit": pl.Utf8, "ContractedCost": MONEY, "EffectiveCost": MONEY,
    "InvoiceIssuerName": pl.Utf8,
    "ListCost": MONEY, "PricingQuantity": pl.Decimal(38, 0), "PricingUnit": pl.Utf8,
    "ProviderName": pl.Utf8,
    "PublisherName": pl.Utf8, "ServiceCategory": pl.Utf8, "ServiceName": pl.Utf8, "Tags": pl.Utf8,
}


def focus_frame(store: AnalyticsStore, period: ReportPeriod, group_by: str,
                directory: Directory | None = None, late: Adjustments | None = None) -> pl.DataFrame:
    """Rows of `period` per group and local day, then a correction per (closed month, group) of `late`."""
    dimension = "team" if group_by == "cost_center" else group_by
    to_group = cost_center_of(directory) if group_by == "cost_center" else (lambda g: g)
    days: dict[tuple[str, str], Usage] = {}
    for f in store.figures(AnalyticsQuery(period.start, period.end, group_by=(dimension, "day"),
                                          timezone=period.timezone, latency=False)):
        if f.requests or f.cost:
            key = (to_group(f.group[0]), f.group[1])
            days[key] = days.get(key, Usage()) + Usage.of(f)
    rows = [_row(period, group_by, group, f"{day}..{day}", usage, directory, f"on {day}", None)
            for (group, day), usage in sorted(days.items(), key=lambda item: (item[0][1], item[0][0]))]
    rows += [_row(period, group_by, group, month, usage, directory, f"in {month}", month)
             for (month, group), usage in sorted((late or {}).items())]
    return pl.DataFrame(rows, schema=COLUMNS, orient="row")


def _row(period: ReportPeriod, group_by: str, group: str, charged: str, usage: Usage,
         directory: Directory | None, when: str, correction_of: str | None) -> list:
    charge = parse_period(charged, period.timezone)
    cost = from_nanos(usage.cost)
    tokens = Decimal(usage.total_tokens)
    what = f"LLM usage of {group_by.replace('_', ' ')} {name_of(group_by, group, directory)} {when}"
    if correction_of:
        what += f", reached Meterline after {correction_of} closed"
    tags = {f"meterline/{group_by}": group, "meterline/requests": str(usage.requests),
            "meterline/input_tokens": str(usage.prompt_tokens),
            "meterline/output_tokens": str(usage.completion_tokens),
            "meterline/cached_input_tokens": str(usage.cached_tokens)}
    return [cost, ACCOUNT_ID, ACCOUNT_NAME, "USD", _utc(period.start), _utc(period.end), "Usage",
            "Correction" if correction_of else None, what, _utc(charge.start), _utc(charge.end), tokens,
            "Tokens", cost, cost, ISSUER, cost, tokens, "Tokens", ISSUER, ISSUER, "AI and Machine Learning",
            "Meterline model gateway", json.dumps(tags, sort_keys=True, ensure_ascii=False)]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def write_focus_csv(frame: pl.DataFrame) -> bytes:
    def cell(value: object) -> object:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(value, Decimal):
            return format(value, "f")
        return value
    return csv_bytes(list(COLUMNS), ([cell(v) for v in row] for row in frame.iter_rows()))


def write_focus_parquet(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out, compression="zstd", statistics=False)
    return out.getvalue()

