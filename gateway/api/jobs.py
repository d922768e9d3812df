"""The job-cost API (seed 002): create a job, make its LLM calls through the metered /v1 path,
complete it, and read what it cost, call by call. Money as exact decimal strings."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from fastapi import APIRouter, Request
from starlette.responses import Response

from domain.jobs import Job, JobStatus
from domain.money import divide_rounded
from domain.services.acting import as_actor
from domain.services.job_states import JobState
from domain.services.jobs import JobNotFound, JobNotRunning
from gateway import errors
from gateway.api.deps import Ctx, usd
from gateway.api.jobs_access import JobCaller, check_team, job_caller, no_such_job, visible_job
from gateway.api.jobs_bodies import CALL_FIELDS, call_request, json_body, metadata, name, text, usd_amount
from gateway.api.jobs_call import job_call
from gateway.api.jobs_completion import recorded_calls, settle_calls
from gateway.api.jobs_desk import desk
from gateway.api.jobs_webhook import announce

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def caller_of(request: Request) -> JobCaller:
    return job_caller(request.app.state.ctx, request.headers.get("authorization"))


@router.post("/create", summary="Create a job of your team")
async def create(ctx: Ctx, request: Request) -> dict[str, Any]:
    caller = caller_of(request)
    body = await json_body(ctx, request, {"team_id", "user_id", "job_type", "metadata", "max_cost_usd"},
                           frozenset({"max_cost_usd"}))
    team_id = name(body, "team_id", required=caller.is_admin) or caller.team_id
    check_team(ctx, caller, team_id)
    user_id = text(body, "user_id", 256) or caller.user_id
    if user_id is None:
        raise errors.bad_request("'user_id' is required with the admin token: whose job is it?", "user_id")
    job = await ctx.command(as_actor(caller.actor, desk(ctx).jobs.create), user_id, team_id,
                            name(body, "job_type"), metadata(body), usd_amount(body, "max_cost_usd"), uuid4())
    return {"job_id": str(job.id), "team_id": job.team_id, "user_id": job.user_id,
            "job_type": job.job_type, "status": str(job.status), "created_at": job.created_at.isoformat(),
            "max_cost_usd": usd(job.max_cost) if job.max_cost is not None else None}


@router.post("/{job_id}/llm-call", summary="Make one LLM call of a job (metered, within every budget)")
async def llm_call(ctx: Ctx, request: Request, job_id: str) -> Response:
    caller = caller_of(request)
    job = await visible_job(ctx, caller, job_id)
    if caller.key is None:
        raise errors.forbidden("an LLM call is metered against an API key: call with an API key of "
                               "the job's team (the admin or a user token cannot make calls)",
                               "api_key_required")
    if job.status is not JobStatus.RUNNING:
        raise _not_running(job)
    call = call_request(await json_body(ctx, request, CALL_FIELDS))
    return await job_call(ctx, caller.key, job, call)


@router.post("/{job_id}/complete", summary="Complete (or fail) a job: its totals, and its customer price")
async def complete(ctx: Ctx, request: Request, job_id: str) -> dict[str, Any]:
    caller = caller_of(request)
    job = await visible_job(ctx, caller, job_id)
    body = await json_body(ctx, request, {"status", "error_message", "metadata"})
    status = body.get("status")
    if status not in ("completed", "failed"):
        raise errors.bad_request("'status' must be \"completed\" or \"failed\"", "status")
    error, extra = text(body, "error_message", 4000), metadata(body)
    if job.status is not JobStatus.RUNNING:
        raise _not_running(job)
    guard = desk(ctx).guard
    if not guard.begin_closing(job_id := str(job.id)):
        raise errors.GatewayError(409, f"job {job_id} is being completed by another request",
                                  "invalid_request_error", "job_not_running")
    done = False
    try:
        await settle_calls(ctx, job.id)
        job = await ctx.command(as_actor(caller.actor, desk(ctx).jobs.complete), job.id, JobStatus(status),
                                error, extra)
        done = True
    except JobNotFound:
        raise no_such_job(job_id) from None
    except JobNotRunning as exc:
        raise errors.GatewayError(409, str(exc), "invalid_request_error", "job_not_running") from None
    finally:
        guard.end_closing(job_id, done)
    summary = completion(job)
    announce(ctx, job, summary)
    return summary


@router.get("/{job_id}/costs", summary="What a job cost, call by call")
async def costs(ctx: Ctx, request: Request, job_id: str) -> dict[str, Any]:
    state = await visible_job(ctx, caller_of(request), job_id)
    await recorded_calls(ctx, [state.id])
    job = await ctx.query(desk(ctx).jobs.job, state.id)
    if job is None:
        raise no_such_job(job_id)
    return {"job_id": str(job.id), "team_id": job.team_id, "status": str(job.status),
            "job_type": job.job_type, "costs": {
                "total_cost_usd": usd(job.cost), **_customer(job),
                "breakdown": [{"call_id": c.call_id, "model": c.model, "purpose": c.purpose,
                               "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                               "latency_ms": c.latency_ms, "cost_usd": usd(c.cost)}
                              for c in job.breakdown()]}}


def completion(job: Job) -> dict[str, Any]:
    """The completion's answer: totals at completion, and the customer price if the team has one."""
    latencies = [c.latency_ms for c in job.breakdown() if c.latency_ms is not None]
    return {"job_id": str(job.id), "status": str(job.status), "costs": {
        "total_calls": job.calls, "total_tokens": job.prompt_tokens + job.completion_tokens,
        "avg_latency_ms": divide_rounded(sum(latencies), len(latencies)) if latencies else 0,
        "total_cost_usd": usd(job.cost), **_customer(job)}}


def _customer(job: Job) -> dict[str, Any]:
    if job.customer_price is None:
        return {}
    return {"customer_price_usd": usd(job.customer_price),
            "margin_usd": usd(job.customer_price - job.cost)}


def _not_running(job: JobState) -> errors.GatewayError:
    return errors.GatewayError(409, f"job {job.id} is {job.status}; a completed or failed job takes "
                               "no more calls and completes once", "invalid_request_error",
                               "job_not_running")

