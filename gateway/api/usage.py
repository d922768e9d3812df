"""A user's usage (yourself, or anyone for admins): totals by day, model, key or application,
this month's spend against each budget, and the last requests (never their content)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Query

from domain.ports.analytics import UsageQuery
from gateway import errors
from gateway.api.deps import Caller, Ctx, acting_user, key_name, usd
from gateway.api.schemas import DATE_RULE, utc_instant
from gateway.api.usage_budgets import this_month

router = APIRouter(prefix="/api", tags=["usage"])


def _instant(value: str | None, field: str, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        return utc_instant(datetime.fromisoformat(value))
    except ValueError:
        raise errors.bad_request(f"'{field}' must be {DATE_RULE}; got {value!r}", field,
                                 code="invalid_date") from None


@router.get("/usage", summary="Usage totals: requests, tokens and cost; this month against budgets")
async def usage(ctx: Ctx, who: Caller, user_id: str | None = None,
                from_: str | None = Query(default=None, alias="from",
                                          description=f"{DATE_RULE}; 30 days ago if omitted"),
                to: str | None = Query(default=None, description=f"{DATE_RULE}; now if omitted"),
                group_by: Literal["day", "model", "key", "application"] | None = None) -> dict:
    now = ctx.clock.now()
    start = _instant(from_, "from", now - timedelta(days=30))
    end = _instant(to, "to", now + timedelta(seconds=1))
    if end <= start:
        raise errors.bad_request("'to' must be after 'from'", "to")
    scope_user = None if (who.is_admin and user_id is None) else acting_user(who, user_id)
    query = UsageQuery(start=start, end=end, user_id=scope_user, group_by=group_by,
                       timezone=ctx.options.billing_timezone)
    rows = await ctx.query(ctx.analytics.usage, query)
    data = [{"group": r.group, "requests": r.requests, "prompt_tokens": r.prompt_tokens,
             "completion_tokens": r.completion_tokens, "cached_tokens": r.cached_tokens,
             "total_tokens": r.prompt_tokens + r.completion_tokens, "cost_usd": usd(r.cost)}
            for r in rows]
    totals = {"requests": sum(r.requests for r in rows),
              "prompt_tokens": sum(r.prompt_tokens for r in rows),
              "completion_tokens": sum(r.completion_tokens for r in rows),
              "cost_usd": usd(sum(r.cost for r in rows))}
    return {"user_id": scope_user, "from": start.isoformat(), "to": end.isoformat(),
            "group_by": group_by, "totals": totals, "data": data,
            # a single user's budgets; an admin asking about everyone has none to show
            "this_month": None if scope_user is None else this_month(ctx, scope_user)}


@router.get("/usage/requests", summary="The last requests: model, key, tokens, cost, latency, status")
async def recent_requests(ctx: Ctx, who: Caller, user_id: str | None = None,
                          limit: int = Query(default=20, ge=1, le=200,
                                             description="how many, newest first: 1 to 200")) -> dict:
    """Newest first. A request metered in parts (a long stream) is one entry, its tokens and cost
    summed, its time, latency and status the last part's; `application` is null when untagged."""
    user = acting_user(who, user_id)
    rows = await ctx.query(ctx.analytics.recent_requests, user, limit)
    return {"user_id": user, "data": [
        {"time": r.occurred_at.isoformat(), "request_id": r.request_id, "model": r.model,
         "key_id": r.key_id, "key_name": key_name(ctx, r.key_id), "prompt_tokens": r.prompt_tokens,
         "completion_tokens": r.completion_tokens, "cost_usd": usd(r.cost), "latency_ms": r.latency_ms,
         "status": r.status, "application": r.application or None} for r in rows]}

