"""The admin analytics API (issue 11): the dashboard's summary, time series, top users and models.

Every figure is the analytics store's `figures` answer (`domain.usage_figures`), asked from a
worker thread; this module only picks the question and shapes the answer. The users table and
one user's deep dive are in `analytics_users.py`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from domain.usage_figures import AnalyticsQuery, Figures
from gateway import errors
from gateway.api import analytics_figures as shape
from gateway.api.analytics_buckets import bucket_labels
from gateway.api.analytics_params import Period, Window
from gateway.api.deps import Admin, Ctx

router = APIRouter(prefix="/api/admin/analytics", tags=["analytics"])

PERIOD_NOTE = ("The period is [from, to); by default the current month so far in the time zone (from the "
               "1st at midnight to the end of today). Money is a decimal string in USD, exact to the "
               "nano-dollar; rates, shares and changes are percentages rounded to two decimals; latency "
               "is in whole milliseconds, null when no request finished. Admins only.")


async def figures(ctx: Ctx, query: AnalyticsQuery) -> list[Figures]:
    """The store's answer; a question it refuses is the caller's mistake (400), never a 500."""
    try:
        return await ctx.query(ctx.analytics.figures, query)
    except ValueError as exc:
        raise errors.bad_request(f"the analytics store cannot answer this: {exc}", None,
                                 code="invalid_query") from None


async def total(ctx: Ctx, period: Window) -> Figures:
    [row] = await figures(ctx, period.query())  # ungrouped: always one row, zeros when empty
    return row


@router.get("/summary", summary="Totals of a period beside the period of equal length before it",
            description="Requests, tokens, active users, cost, average and p95 latency and error rate "
            "(percent of finished requests) for the period and the one before it, with each "
            "figure's change in percent (null when the previous figure is zero). " + PERIOD_NOTE)
async def summary(ctx: Ctx, _: Admin, period: Period) -> dict:
    before = period.previous()
    now, then = await total(ctx, period), await total(ctx, before)
    return {**period.describe(), **shape.summary(now),
            "previous": {"from": before.start.isoformat(), "to": before.end.isoformat(),
                         **shape.summary(then)},
            "change_percent": shape.changes(now, then)}


@router.get("/timeseries", summary="One figure per hour, day, week or month, every bucket present",
            description="`t` is the bucket's local label: an hour as '2024-03-31T03:00:00+02:00', a "
            "day as '2024-03-31', a week by its Monday, a month by its 1st. Empty buckets read 0; "
            "latency (average of finished requests) reads null where none finished. At most 2,000 "
            "points. " + PERIOD_NOTE)
async def timeseries(ctx: Ctx, _: Admin, period: Period,
                     metric: Literal["requests", "tokens", "cost", "errors", "latency"] = "requests",
                     bucket: Literal["hour", "day", "week", "month"] = "day") -> dict:
    labels = bucket_labels(period.start, period.end, bucket, period.zone)
    # every metric here is a sum or an average: no latency histogram (the dearest measure) needed
    rows = {row.group[0]: row for row in await figures(ctx, period.query(bucket, latency=False))}
    return {**period.describe(), "metric": metric, "bucket": bucket,
            "points": [{"t": label, "value": shape.metric_value(rows.get(label), metric)}
                       for label in labels]}


@router.get("/top-users", summary="The users who used the most, with their daily trend",
            description="Ordered by `by` (most first; ties by user id). `trend` holds the `by` figure "
            "of each local day of the period, in the order of `days`. " + PERIOD_NOTE)
async def top_users(ctx: Ctx, _: Admin, period: Period,
                    by: Literal["tokens", "cost", "requests"] = "tokens",
                    limit: Annotated[int, Query(ge=1, le=100, description="how many users: 1 to 100")] = 10
                    ) -> dict:
    days = bucket_labels(period.start, period.end, "day", period.zone, param="from")
    users = await figures(ctx, period.query("user", latency=False))
    users.sort(key=lambda f: (-shape.ranking_value(f, by), f.group[0]))
    top = users[:limit]
    wanted = {f.group[0] for f in top}
    daily: dict[str, dict[str, Figures]] = {}
    # One question for the top users' days (not every user's: a month of a thousand users is
    # 31,000 user-days), answered from the daily rollup in one pass.
    trend = replace(period.query("user", "day", latency=False), user_ids=tuple(sorted(wanted)))
    for row in await figures(ctx, trend):
        daily.setdefault(row.group[0], {})[row.group[1]] = row
    return {**period.describe(), "by": by, "days": days, "data": [
        {"user_id": f.group[0], **shape.usage(f),
         "trend": [shape.metric_value(daily.get(f.group[0], {}).get(day), by) for day in days]}
        for f in top]}


@router.get("/models", summary="Each model's usage, latency, errors and share of requests",
            description="Ordered by requests (most first; ties by model name). `share` is the model's "
            "percentage of all requests in the period. " + PERIOD_NOTE)
async def models(ctx: Ctx, _: Admin, period: Period) -> dict:
    rows = await figures(ctx, period.query("model"))
    requests = sum(f.requests for f in rows)
    rows.sort(key=lambda f: (-f.requests, f.group[0]))
    return {**period.describe(), "data": [
        {"model": f.group[0], **shape.usage(f),
         "avg_latency_ms": shape.whole_ms(shape.average_latency(f)),
         "p95_latency_ms": f.latency_quantile(0.95), "error_rate": shape.percent(shape.error_rate(f)),
         "share": shape.share(f.requests, requests)} for f in rows]}
