"""The admin analytics API's users: the sortable users table (JSON or CSV) and one user's deep dive.

A user id that has no usage and no registration reads as zeros, not 404: facts name users as the
gateway saw them, usage may precede registration (or outlive an offboarding), and a 404 would
tell a dashboard nothing it can act on; `registered` says whether the registry knows the user.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from domain.usage_figures import Figures
from gateway.api import analytics_figures as shape
from gateway.api.analytics import PERIOD_NOTE, figures, total
from gateway.api.analytics_params import Period, UserPeriod, text
from gateway.api.deps import Admin, Ctx, key_name, usd
from reports.writers.csv_text import csv_bytes

router = APIRouter(prefix="/api/admin/analytics", tags=["analytics"])

COLUMNS = ("user_id", "requests", "total_tokens", "cost_usd", "avg_cost_per_request_usd",
           "previous_requests", "previous_total_tokens", "previous_cost_usd", "trend_percent")
SortBy = Literal["user_id", "requests", "tokens", "cost", "avg_cost", "trend"]
HOURS = tuple(f"{hour:02d}" for hour in range(24))


def _row(now: Figures, then: Figures | None) -> dict:
    before = shape.usage(then)
    return {"user_id": now.group[0], **shape.usage(now),
            "avg_cost_per_request_usd": shape.per_request_usd(now.cost, now.requests),
            "previous_requests": before["requests"], "previous_total_tokens": before["total_tokens"],
            "previous_cost_usd": before["cost_usd"],
            "trend_percent": shape.change(now.total_tokens, then.total_tokens if then else 0)}


def _sort_value(now: Figures, then: Figures | None, sort: str) -> Fraction | int | None:
    if sort == "avg_cost":
        return Fraction(now.cost, now.requests) if now.requests else None
    if sort == "trend":
        previous = then.total_tokens if then else 0
        return Fraction(now.total_tokens - previous, abs(previous)) if previous else None
    return {"requests": now.requests, "tokens": now.total_tokens, "cost": now.cost}[sort]


def _ordered(pairs: list[tuple[Figures, Figures | None]], sort: str, desc: bool
             ) -> list[tuple[Figures, Figures | None]]:
    """Sorted by the exact value (money in nano-dollars, ratios as fractions), ties by user id
    ascending; rows without a value (no requests, no previous usage) last either way."""
    if sort == "user_id":
        return sorted(pairs, key=lambda p: p[0].group[0], reverse=desc)
    valued = [(p, _sort_value(*p, sort)) for p in pairs]
    known = sorted(((p, v) for p, v in valued if v is not None),
                   key=lambda pv: (-pv[1] if desc else pv[1], pv[0][0].group[0]))
    unknown = sorted((p for p, v in valued if v is None), key=lambda p: p[0].group[0])
    return [p for p, _ in known] + unknown


def _csv(rows: list[dict]) -> Response:
    body = csv_bytes(COLUMNS, ([row[c] for c in COLUMNS] for row in rows))
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="users.csv"'})


@router.get("/users", summary="The users table: usage, cost per request and trend; sortable, CSV",
            description="One row per user with usage in the period. `trend_percent` is the change in "
            "total tokens against the period of equal length before (null when there was none); "
            "`avg_cost_per_request_usd` is rounded half up to the nano-dollar. `format=csv` gives "
            "the same rows and columns as text/csv with a header row (null as an empty cell). "
            + PERIOD_NOTE, response_model=None)
async def users(ctx: Ctx, _: Admin, period: Period, sort: SortBy = "tokens",
                order: Literal["asc", "desc"] = "desc",
                limit: Annotated[int, Query(ge=1, le=10_000, description="rows: 1 to 10,000")] = 100,
                offset: Annotated[int, Query(ge=0, le=10**9, description="rows to skip")] = 0,
                format: Literal["json", "csv"] = "json") -> dict | Response:
    now = await figures(ctx, period.query("user", latency=False))
    before = {f.group[0]: f for f in await figures(ctx, period.previous().query("user", latency=False))}
    pairs = _ordered([(f, before.get(f.group[0])) for f in now], sort, order == "desc")
    rows = [_row(*pair) for pair in pairs[offset:offset + limit]]
    if format == "csv":
        return _csv(rows)
    return {**period.describe(), "sort": sort, "order": order, "limit": limit, "offset": offset,
            "total": len(pairs), "data": rows}


@router.get("/users/{user_id}", summary="One user's deep dive: totals, models, peak hours, trend, keys",
            description="Totals; each model with its share of the user's requests (the top one "
            "first); requests by local hour of day, all 24 present, and the peak hour (the earliest "
            "of equals); the change against the period of equal length before; each key of the "
            "user (registered or seen in usage) with its usage. An unknown user reads as zeros "
            "with `registered: false`. " + PERIOD_NOTE)
async def user(user_id: str, ctx: Ctx, _: Admin, period: UserPeriod) -> dict:
    period = period.for_user(text(user_id, "user_id") or "")
    now, then = await total(ctx, period), await total(ctx, period.previous())
    by_model = await figures(ctx, period.query("model"))
    by_model.sort(key=lambda f: (-f.requests, f.group[0]))
    by_hour = {f.group[0]: f.requests for f in await figures(ctx, period.query("hour_of_day"))}
    hours = [{"hour": hour, "requests": by_hour.get(hour, 0)} for hour in HOURS]
    peak = max(hours, key=lambda h: (h["requests"], -int(h["hour"])))
    models = [{"model": f.group[0], **shape.usage(f), "share": shape.share(f.requests, now.requests)}
              for f in by_model]
    before = period.previous()
    return {**period.describe(), "user_id": period.user_id,
            "registered": ctx.registry_view.user(period.user_id) is not None,
            "total_requests": now.requests, "total_tokens": now.total_tokens, "cost_usd": usd(now.cost),
            "top_model": models[0] if models else None, "models": models,
            "peak_hour": peak["hour"] if peak["requests"] else None, "hours": hours,
            "trend": {"from": before.start.isoformat(), "to": before.end.isoformat(),
                      "previous_requests": then.requests, "previous_total_tokens": then.total_tokens,
                      "previous_cost_usd": usd(then.cost),
                      "requests_change_percent": shape.change(now.requests, then.requests),
                      "tokens_change_percent": shape.change(now.total_tokens, then.total_tokens),
                      "cost_change_percent": shape.change(now.cost, then.cost)},
            "keys": _keys(ctx, period.user_id, period.key_id, await figures(ctx, period.query("key")))}


def _keys(ctx: Ctx, user_id: str, only: str | None, used: list[Figures]) -> list[dict]:
    """Keys with usage first (most requests first), then the user's registered keys without any."""
    usage = {f.group[0]: f for f in used}
    registered = {str(k.id): k.name for k in ctx.registry_view.api_keys(user_id)}
    ids = sorted(usage, key=lambda k: (-usage[k].requests, k))
    ids += sorted(k for k in registered if k not in usage and only in (None, k))
    return [{"key_id": k, "name": registered.get(k) or key_name(ctx, k), **shape.usage(usage.get(k))}
            for k in ids]

