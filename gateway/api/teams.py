"""A team's jobs: its usage in a month (seed 002, example 4) and its job list, filtered and
paged. Jobs count in the month they were created, in the billing time zone."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request

from domain.money import divide_rounded
from domain.period_close import MONTH
from domain.periods import Period, period_bounds
from domain.services.job_index import JobSummary
from gateway import errors
from gateway.api.deps import Ctx, usd
from gateway.api.jobs_access import check_team, job_caller
from gateway.api.jobs_completion import recorded_calls
from gateway.api.jobs_desk import desk
from gateway.api.schemas import DATE_RULE, utc_instant

router = APIRouter(prefix="/api/teams", tags=["jobs"])
STATUSES = ("running", "completed", "failed")


async def _team_jobs(ctx: Ctx, request: Request, team_id: str) -> list[JobSummary]:
    """The team's jobs, with the calls this gateway already answered on them (read your writes)."""
    check_team(ctx, job_caller(ctx, request.headers.get("authorization")), team_id)
    jobs = await ctx.query(desk(ctx).index.of_team, team_id)
    if await recorded_calls(ctx, [UUID(j.job_id) for j in jobs if j.status == "running"]):
        jobs = await ctx.query(desk(ctx).index.of_team, team_id)
    return jobs


@router.get("/{team_id}/usage", summary="A team's jobs in a month: counts and cost, by job type")
async def usage(ctx: Ctx, request: Request, team_id: str,
                period: str = Query(description="the month, YYYY-MM")) -> dict[str, Any]:
    if not MONTH.fullmatch(period) or not 2000 <= int(period[:4]) <= 2999:  # ASCII digits only
        raise errors.bad_request(f"'period' must be a month YYYY-MM from 2000 on, got {period[:20]!r}",
                                 "period")
    tz = ctx.options.billing_timezone
    start, end = period_bounds(Period.MONTH, datetime(int(period[:4]), int(period[5:]), 15,
                                                      tzinfo=ZoneInfo(tz)), tz)
    jobs = [j for j in await _team_jobs(ctx, request, team_id) if start <= j.created_at < end]
    cost = sum(j.cost for j in jobs)
    summary = {"total_jobs": len(jobs),
               "successful_jobs": sum(j.status == "completed" for j in jobs),
               "failed_jobs": sum(j.status == "failed" for j in jobs),
               "running_jobs": sum(j.status == "running" for j in jobs),
               "total_cost_usd": usd(cost),
               "avg_cost_per_job": usd(divide_rounded(cost, len(jobs)) if jobs else 0),
               **_customer(jobs)}
    types: dict[str, list[JobSummary]] = {}
    for job in jobs:
        types.setdefault(job.job_type, []).append(job)
    return {"team_id": team_id, "period": period, "summary": summary,
            "job_types": {name: {"count": len(group), "cost_usd": usd(sum(j.cost for j in group)),
                                 **_customer(group)} for name, group in sorted(types.items())}}


def _customer(jobs: list[JobSummary]) -> dict[str, str]:
    """Customer price and margin over the jobs that were priced (completed under a pricing rule)."""
    priced = [j for j in jobs if j.customer_price is not None]
    if not priced:
        return {}
    price = sum(j.customer_price for j in priced)  # type: ignore[misc]
    return {"customer_price_usd": usd(price), "margin_usd": usd(price - sum(j.cost for j in priced))}


@router.get("/{team_id}/jobs", summary="A team's jobs, newest first, filtered and paged")
async def jobs(ctx: Ctx, request: Request, team_id: str, status: str | None = None,
               job_type: str | None = None,
               from_: str | None = Query(default=None, alias="from", description=DATE_RULE),
               to: str | None = Query(default=None, description=DATE_RULE),
               cursor: str | None = None,
               limit: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise errors.bad_request(f"'status' must be one of {', '.join(STATUSES)}", "status")
    start, end = _instant(from_, "from"), _instant(to, "to")
    if start is not None and end is not None and end <= start:
        raise errors.bad_request(f"'to' ({to}) must be after 'from' ({from_}): the window is [from, to)",
                                 "to", code="invalid_date")
    after = _cursor(cursor)
    found = sorted((j for j in await _team_jobs(ctx, request, team_id)
                    if (status is None or j.status == status)
                    and (job_type is None or j.job_type == job_type)
                    and (start is None or j.created_at >= start) and (end is None or j.created_at < end)
                    and (after is None or (j.created_at, j.job_id) < after)),
                   key=lambda j: (j.created_at, j.job_id), reverse=True)
    page = found[:limit]
    more = len(found) > limit
    return {"team_id": team_id, "data": [_row(j) for j in page],
            "next_cursor": _encode(page[-1]) if more else None}


def _row(job: JobSummary) -> dict[str, Any]:
    return {"job_id": job.job_id, "job_type": job.job_type, "user_id": job.user_id,
            "status": str(job.status), "created_at": job.created_at.isoformat(),
            "completed_at": job.completed_at.isoformat() if job.completed_at else None,
            "total_calls": job.calls, "total_tokens": job.tokens, "total_cost_usd": usd(job.cost),
            "customer_price_usd": usd(job.customer_price) if job.customer_price is not None else None}


def _instant(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return utc_instant(datetime.fromisoformat(value))
    except ValueError:
        raise errors.bad_request(f"'{field}' must be {DATE_RULE}; got {value[:40]!r}", field,
                                 code="invalid_date") from None


def _encode(job: JobSummary) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.job_id}".encode()).decode()


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    if value is None:
        return None
    try:
        created, _, job_id = base64.urlsafe_b64decode(value.encode()).decode().partition("|")
        return utc_instant(datetime.fromisoformat(created)), job_id
    except (ValueError, UnicodeError):
        raise errors.bad_request("'cursor' is not one this API gave; pass next_cursor as it came",
                                 "cursor") from None
