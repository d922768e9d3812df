"""Month close (issue 14): list the closed months, read one's manifest, close a month.

A closed month's chargeback exports are sealed: `GET /api/admin/reports/chargeback` serves the
stored bytes, which the manifest's SHA-256 values name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from domain.period_close import MONTH, PeriodClose
from domain.services.billing import AlreadyClosedError, Billing
from gateway import errors
from gateway.api.deps import Admin, Ctx, usd
from gateway.api.reports import directory_of, stored_prices
from gateway.context import GatewayContext
from reports.closing import CloseRefusedError, close_month
from reports.month_close import ClosedMonth, receiving_month

router = APIRouter(prefix="/api/admin/periods", tags=["reports"])


def _month(value: str) -> str:
    if not MONTH.fullmatch(value):  # the pattern a close's id is derived from (ASCII digits)
        raise errors.bad_request(f"month {value[:20]!r} is not a calendar month: give YYYY-MM with the month "
                                 "01 to 12, e.g. 2026-03", "month", code="invalid_period")
    return value


Month = Annotated[str, Path(max_length=40, description="a calendar month, YYYY-MM", examples=["2026-03"])]


def _billing(ctx: GatewayContext) -> Billing:
    if ctx.billing is None:
        raise errors.GatewayError(503, "month close is not available in this process", "server_error",
                                  "billing_unavailable")
    return ctx.billing


def _summary(close: PeriodClose) -> dict[str, Any]:
    manifest = close.manifest
    return {"month": close.month, "closed_at": close.closed_at.isoformat(), "closed_by": close.closed_by,
            "timezone": manifest["timezone"], "from": manifest["from"], "to": manifest["to"],
            "requests": manifest["requests"], "cost_usd": usd(manifest["cost_nanos"]),
            "exports": manifest["exports"], "price_versions": manifest["price_versions"],
            "adjustment_lines": len(manifest["adjustments"]["model"])}


@router.get("", summary="The closed months, oldest first, and where late usage is booked")
async def closed(ctx: Ctx, _: Admin) -> dict:
    closes = await ctx.query(_billing(ctx).closes)
    return {"closed": [_summary(c) for c in closes],
            "receiving_month": receiving_month([ClosedMonth(c.month, c.manifest) for c in closes])}


@router.get("/{month}", summary="A closed month's manifest")
async def manifest(ctx: Ctx, _: Admin, month: Month) -> dict:
    close = await ctx.query(_billing(ctx).closed, _month(month))
    if close is None:
        raise errors.not_found(f"{month} is not closed; POST /api/admin/periods/{month}/close closes it",
                               code="period_not_closed", param="month")
    return _summary(close)


@router.post("/{month}/close", status_code=201, summary="Close a month: seal its chargeback exports",
             description="Records PeriodClosed with a manifest (requests, cost, per-export SHA-256, price "
             "versions in force) and stores every chargeback export of the month (each grouping in "
             "each format). Months close in order, once each, after they end in the billing time zone.")
async def close(ctx: Ctx, _: Admin, month: Month, request: Request) -> dict:
    billing, month = _billing(ctx), _month(month)
    actor = getattr(request.state, "audit_actor", None) or "admin"
    directory, prices = directory_of(ctx), stored_prices(ctx)
    try:
        closing = await ctx.query(close_month, ctx.analytics, billing, month, ctx.options.billing_timezone,
                                  ctx.clock.now(), actor, directory, prices)
    except AlreadyClosedError as exc:
        raise errors.GatewayError(409, str(exc), "invalid_request_error", "period_closed", "month") from None
    except CloseRefusedError as exc:
        raise errors.bad_request(str(exc), "month", code="period_not_closable") from None
    return _summary(closing)
