"""The finance reports API (issue 14): chargeback (and FOCUS), re-rating, model economics.

Each report is built by `reports/` from the analytics store's figures; this module reads the
parameters, runs the report off the event loop and serves the bytes or the JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from starlette.responses import Response

from domain.money import from_nanos
from domain.pricing import Price
from gateway import errors
from gateway.api.deps import Admin, Ctx, usd
from gateway.context import GatewayContext
from reports.chargeback import GROUPS
from reports.closing import chargeback_file
from reports.directory import LookupDirectory
from reports.economics import economics
from reports.exports import ALL_FORMATS, file_name
from reports.price_book_spec import SPEC_HELP, parse_price_book
from reports.report_period import EXAMPLES, PeriodError, ReportPeriod, parse_period
from reports.rerating import WRITERS, rerate

router = APIRouter(prefix="/api/admin/reports", tags=["reports"])

GroupBy = Literal["user", "key", "team", "cost_center", "model", "application"]
FormatName = Literal["json", "csv", "parquet", "xlsx", "pdf", "focus", "focus-parquet"]
assert set(GroupBy.__args__) == set(GROUPS) and set(FormatName.__args__) == set(ALL_FORMATS)
PeriodParam = Annotated[str | None, Query(max_length=40, description=EXAMPLES + "; default: this month")]
T = TypeVar("T")


def _period(ctx: GatewayContext, spec: str | None) -> ReportPeriod:
    zone = ctx.options.billing_timezone
    if spec is None:  # this month
        spec = f"{ctx.clock.now().astimezone(ZoneInfo(zone)):%Y-%m}"
    try:
        return parse_period(spec, zone)
    except PeriodError as exc:
        raise errors.bad_request(str(exc), "period", code="invalid_period") from None


def directory_of(ctx: GatewayContext) -> LookupDirectory:
    """Names for the ids in a report, from this gateway's view of the registry."""
    return LookupDirectory(ctx.registry_view.key, ctx.registry_view.team)


def stored_prices(ctx: GatewayContext) -> list[Price]:
    """Every price version of every model the registry knows."""
    return [price for book in ctx.registry_view.models() for price in book.prices]


async def _run(ctx: GatewayContext, work: Callable[[], T]) -> T:
    """A report off the event loop; a question the store or the report refuses is a 400."""
    try:
        return await ctx.query(work)
    except ValueError as exc:
        raise errors.bad_request(f"this report cannot be made: {exc}", None, code="invalid_report") from None


@router.get("/chargeback", summary="Usage and cost per group over a month, a quarter or a range of days",
            description="Per group: requests, input (of which cached) and output tokens, cost and its "
            "share of the total (percentages with two decimals that add up to 100.00); a totals row. "
            "Periods are calendar units in the billing time zone: " + EXAMPLES + "; default: this month. "
            "Money is USD exact to the nano-dollar (decimal strings in JSON and CSV, Decimal(38, 9) in "
            "Parquet; XLSX cells are spreadsheet numbers). `focus` and `focus-parquet` write FinOps FOCUS "
            "1.2 rows, one per group and day. A closed month is served from the files sealed when it "
            "closed (`x-meterline-sealed: true`), byte for byte; the month after the latest close also "
            "lists usage that reached closed months late, as adjustment lines whose `usage_period` is "
            "the closed month (FOCUS: ChargeClass Correction). `x-meterline-sha256` is the body's hash. "
            "Admins only.", response_class=Response)
async def chargeback_report(ctx: Ctx, _: Admin, period: PeriodParam = None, group_by: GroupBy = "user",
                            format: FormatName = "json") -> Response:  # noqa: A002 - the API's word
    chosen, directory = _period(ctx, period), directory_of(ctx)

    body, sealed = await _run(ctx, lambda: chargeback_file(ctx.analytics, ctx.billing, chosen, group_by,
                                                           format, directory))
    headers = {"x-meterline-sealed": "true" if sealed else "false",
               "x-meterline-sha256": hashlib.sha256(body).hexdigest()}
    if format != "json":
        headers["content-disposition"] = f'attachment; filename="{file_name(chosen, group_by, format)}"'
    return Response(body, media_type=ALL_FORMATS[format].media_type, headers=headers)


@router.get("/rerate", summary="A period re-rated under another price book, beside its actual cost",
            description="Per group: actual cost, the cost under `price_book`, and the difference. "
            f"price_book: {SPEC_HELP}. Each (group, model) line is rated once, rounded half to even to "
            "the nano-dollar; the actual cost was rated per request, so re-rating under the prices that "
            "rated the facts can differ by at most half a nano-dollar per request. Models the price book "
            "does not price keep their actual cost and are listed. The same inputs give the same bytes. "
            "Admins only.", response_class=Response)
async def rerate_report(ctx: Ctx, _: Admin,
                        price_book: Annotated[str, Query(max_length=2000, description=SPEC_HELP)],
                        period: PeriodParam = None, group_by: GroupBy = "user",
                        format: Literal["json", "csv"] = "json") -> Response:  # noqa: A002
    chosen, directory = _period(ctx, period), directory_of(ctx)
    stored = stored_prices(ctx)

    def make() -> bytes:
        book = parse_price_book(price_book, stored)
        return WRITERS[format][0](rerate(ctx.analytics, chosen, group_by, book, directory))

    return Response(await _run(ctx, make), media_type=WRITERS[format][1])


@router.get("/economics", summary="Per model: requests, tokens, chargeback revenue, GPU cost, margin",
            description="GPU cost = the model's gpu_cost_per_hour x its serving hours: in each hour, the "
            "latencies of its requests summed and divided by `concurrency` (requests the server runs at "
            "once), capped at the hour. A model without a GPU cost shows null cost and margin. Admins only.")
async def economics_report(ctx: Ctx, _: Admin, period: PeriodParam = None,
                           concurrency: Annotated[int, Query(ge=1, le=100_000)] = 1) -> dict:
    chosen = _period(ctx, period)
    prices = stored_prices(ctx)
    models = await _run(ctx, lambda: economics(ctx.analytics, chosen, prices, concurrency))
    return {"period": chosen.label, "from": chosen.start.isoformat(), "to": chosen.end.isoformat(),
            "concurrency": concurrency, "currency": "USD",
            "models": [{"model": m.model, "requests": m.usage.requests, "total_tokens": m.usage.total_tokens,
                        "revenue_usd": usd(m.usage.cost),
                        "serving_hours": format(from_nanos(round(m.serving_hours * 10**9)), "f"),
                        "gpu_cost_usd": None if m.gpu_cost is None else usd(m.gpu_cost),
                        "margin_usd": None if m.margin is None else usd(m.margin),
                        "margin_percent": None if m.margin_percent is None else str(m.margin_percent)}
                       for m in models]}
