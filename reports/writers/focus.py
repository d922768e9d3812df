"""FinOps FOCUS 1.2 cost and usage rows: one per group and day of the period, as CSV or Parquet.

The mandatory columns, typed as the specification says (amounts as decimals, exact to the
nano-dollar; dates as UTC instants), and Meterline's ids in `Tags` (a JSON object), so a FinOps
tool can read Meterline beside its cloud bills. Late usage booked for a closed month is a row per
group with ChargeClass "Correction" whose charge period is that closed month.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from domain.ports.analytics import AnalyticsStore
from domain.usage_figures import AnalyticsQuery
from reports.chargeback import Adjustments, Directory, Usage, cost_center_of, name_of
from reports.report_period import ReportPeriod, parse_period

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
    lines = [(group, f"{day}..{day}", usage, f"on {day}", None)
             for (group, day), usage in sorted(days.items(), key=lambda item: (item[0][1], item[0][0]))]
    lines += [(group, month, usage, f"in {month}", month)
              for (month, group), usage in sorted((late or {}).items())]
    return _frame(period, group_by, directory, lines)


def _frame(period: ReportPeriod, group_by: str, directory: Directory | None,
           lines: list[tuple[str, str, Usage, str, str | None]]) -> pl.DataFrame:
    """Built by column, each charge period and name worked out once, money and times as integer
    arrays: a month by key is ~150,000 rows, and per-row Python objects would take seconds."""
    bounds = {charged: parse_period(charged, period.timezone) for charged in {line[1] for line in lines}}
    names = {group: name_of(group_by, group, directory) for group in {line[0] for line in lines}}
    what = group_by.replace("_", " ")
    n = len(lines)
    cost = _money([usage.cost for _, _, usage, _, _ in lines])
    tokens = pl.Series([usage.total_tokens for _, _, usage, _, _ in lines], dtype=pl.Int64)
    tokens = tokens.cast(pl.Decimal(38, 0))
    columns = {
        "BilledCost": cost, "BillingAccountId": [ACCOUNT_ID] * n, "BillingAccountName": [ACCOUNT_NAME] * n,
        "BillingCurrency": ["USD"] * n, "BillingPeriodStart": _times([period.start] * n),
        "BillingPeriodEnd": _times([period.end] * n), "ChargeCategory": ["Usage"] * n,
        "ChargeClass": ["Correction" if late else None for *_, late in lines],
        "ChargeDescription": [f"LLM usage of {what} {names[group]} {when}"
                              + (f", reached Meterline after {late} closed" if late else "")
                              for group, _, _, when, late in lines],
        "ChargePeriodStart": _times([bounds[charged].start for _, charged, *_ in lines]),
        "ChargePeriodEnd": _times([bounds[charged].end for _, charged, *_ in lines]),
        "ConsumedQuantity": tokens, "ConsumedUnit": ["Tokens"] * n, "ContractedCost": cost,
        "EffectiveCost": cost, "InvoiceIssuerName": [ISSUER] * n, "ListCost": cost,
        "PricingQuantity": tokens,
        "PricingUnit": ["Tokens"] * n, "ProviderName": [ISSUER] * n, "PublisherName": [ISSUER] * n,
        "ServiceCategory": ["AI and Machine Learning"] * n, "ServiceName": ["Meterline model gateway"] * n,
        "Tags": [_tags(group_by, group, usage) for group, _, usage, _, _ in lines],
    }
    return pl.DataFrame(columns, schema=COLUMNS)


def _money(nanos: list[int]) -> pl.Series:
    """Nano-dollars as Decimal(38, 9) without a Decimal object each: the integers are the
    decimal's unscaled values, laid out as Arrow's little-endian 128-bit words."""
    values = np.array(nanos, dtype=np.int64)
    words = np.empty((len(values), 2), dtype=np.int64)
    words[:, 0], words[:, 1] = values, values >> 63  # the high word extends the sign
    array = pa.Array.from_buffers(pa.decimal128(38, 9), len(values), [None, pa.py_buffer(words.tobytes())])
    return pl.from_arrow(array)


def _times(moments: list[datetime]) -> pl.Series:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = {moment: (moment - epoch) // timedelta(microseconds=1) for moment in set(moments)}
    return pl.Series([micros[moment] for moment in moments], dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))


def _tags(group_by: str, group: str, usage: Usage) -> str:
    return orjson.dumps({f"meterline/{group_by}": group, "meterline/requests": str(usage.requests),
                         "meterline/input_tokens": str(usage.prompt_tokens),
                         "meterline/output_tokens": str(usage.completion_tokens),
                         "meterline/cached_input_tokens": str(usage.cached_tokens)},
                        option=orjson.OPT_SORT_KEYS).decode()


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def write_focus_csv(frame: pl.DataFrame) -> bytes:
    """Times as ISO 8601 UTC ("2026-03-01T00:00:00Z"), decimals exact. No cell needs formula
    quoting: the only text a user chose (ids, names) sits inside descriptions and tags, never first."""
    return frame.write_csv(datetime_format="%Y-%m-%dT%H:%M:%SZ", line_terminator="\r\n").encode()


def write_focus_parquet(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out, compression="zstd", statistics=False)
    return out.getvalue()

