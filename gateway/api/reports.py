"""The finance reports API (issue 14): chargeback per user, key, team, cost centre, model or app.

The report is built by `reports/` from the analytics store's figures and written in the asked
format; this module reads the parameters and serves the bytes.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from starlette.responses import Response

from gateway import errors
from gateway.api.deps import Admin, Ctx
from reports.chargeback import GROUPS, chargeback
from reports.closing import chargeback_file
from reports.directory import LookupDirectory
from reports.exports import FORMATS, file_name
from reports.report_period import EXAMPLES, PeriodError, ReportPeriod, parse_period

router = APIRouter(prefix="/api/admin/reports", tags=["reports"])

GroupBy = Literal["user", "key", "team", "cost_center", "model", "application"]
FormatName = Literal["json", "csv", "parquet", "xlsx", "pdf"]
assert set(GroupBy.__args__) == set(GROUPS) and set(FormatName.__args__) == set(FORMATS)


def _period(ctx: Ctx, spec: str | None) -> ReportPeriod:
    zone = ctx.options.billing_timezone
    if spec is None:  # this month
        spec = f"{ctx.clock.now().astimezone(ZoneInfo(zone)):%Y-%m}"
    try:
        return parse_period(spec, zone)
    except PeriodError as exc:
        raise errors.bad_request(str(exc), "period", code="invalid_period") from None


@router.get("/chargeback", summary="Usage and cost per group over a month, a quarter or a range of days",
            description="Per group: requests, input (of which cached) and output tokens, cost and its "
            "share of the total (percentages with two decimals that add up to 100.00); a totals row. "
            "Periods are calendar units in the billing time zone: " + EXAMPLES + "; default: this month. "
            "Money is USD exact to the nano-dollar (decimal strings in JSON and CSV, Decimal(38, 9) in "
            "Parquet; XLSX cells are spreadsheet numbers). A closed month is served from the files "
            "sealed when it closed (`x-meterline-sealed: true`), byte for byte; the month after the "
            "latest close also lists usage that reached closed months late, as adjustment lines "
            "whose `usage_period` is the closed month. `x-meterline-sha256` is the body's hash. "
            "Admins only.",
            response_class=Response)
async def chargeback_report(
        ctx: Ctx, _: Admin,
        period: Annotated[str | None, Query(max_length=40, description=EXAMPLES)] = None,
        group_by: GroupBy = "user", format: FormatName = "json") -> Response:  # noqa: A002 - the API's word
    chosen = _period(ctx, period)
    directory = LookupDirectory(ctx.registry_view.key, ctx.registry_view.team)

    def render() -> tuple[bytes, bool]:
        if ctx.billing is None:
            return FORMATS[format].write(chargeback(ctx.analytics, chosen, group_by, directory)), False
        return chargeback_file(ctx.analytics, ctx.billing, chosen, group_by, format, directory)

    try:
        body, sealed = await ctx.query(render)
    except ValueError as exc:
        raise errors.bad_request(f"the analytics store cannot answer this: {exc}", None,
                                 code="invalid_query") from None
    headers = {"x-meterline-sealed": "true" if sealed else "false",
               "x-meterline-sha256": hashlib.sha256(body).hexdigest()}
    if format != "json":
        headers["content-disposition"] = f'attachment; filename="{file_name(chosen, group_by, format)}"'
    return Response(body, media_type=FORMATS[format].media_type, headers=headers)
