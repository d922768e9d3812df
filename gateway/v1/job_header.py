"""`X-Meterline-Job` on a /v1 request: the call counts toward that job only if the job exists,
belongs to the key's team and is running; otherwise the request is refused before anything is
reserved (404 for an unknown job or another team's, 409 for an ended one, 429 when the job's
`max_cost_usd` is already spent). One read of the job's store, only for requests carrying it.
An admitted call then reserves its worst case against the job's cap (`hold_for_job`), so calls
on /v1 and on /api/jobs/{id}/llm-call share one bound, and a completion waits for both."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from uuid import UUID

from domain.jobs import JobStatus
from domain.keys import ApiKey
from domain.money import usd_text
from domain.services.job_states import JobState
from gateway import errors
from gateway.api.jobs_access import job_state
from gateway.api.jobs_call import job_refusal
from gateway.api.jobs_desk import desk
from gateway.api.jobs_guard import Refusal
from gateway.context import GatewayContext
from gateway.v1.admission import Admitted


async def check_job(ctx: GatewayContext, key: ApiKey, job_id: str) -> JobState:
    jobs = desk(ctx)
    job = await job_state(ctx, UUID(job_id))
    if job is None or not key.team_id or job.team_id != key.team_id:
        raise errors.not_found(f"X-Meterline-Job: there is no job {job_id} of this key's team; "
                               "create one with POST /api/jobs/create using a key of the team",
                               code="job_not_found", param=None)
    if job.status is not JobStatus.RUNNING or jobs.guard.closing(job_id):
        raise errors.GatewayError(409, f"X-Meterline-Job: job {job_id} is "
                                  f"{'being completed' if job.status is JobStatus.RUNNING else job.status}"
                                  "; an ended job takes no more calls", "invalid_request_error",
                                  "job_not_running")
    if job.max_cost is not None and jobs.guard.spent(job_id) >= job.max_cost:
        exc = errors.insufficient_quota(f"X-Meterline-Job: job {job_id} has spent its max_cost_usd "
                                        f"${usd_text(job.max_cost)}; create a new job or complete this one")
        exc.code = "job_budget_exceeded"
        raise exc
    return job


def hold_for_job(ctx: GatewayContext, job: JobState, adm: Admitted) -> Callable[..., None]:
    """Reserves the call's worst case against the job's max_cost_usd, as llm-call does (one lock
    per job: concurrent calls never settle past the cap in one gateway). Returns how metering
    settles it, part by part: `(event_id, cost, released, final)` (metering.py). A refusal hands
    back the budgets' reservation first."""
    guard = desk(ctx).guard
    hold = guard.reserve(str(job.id), job.max_cost, adm.reservation.amount)
    if isinstance(hold, Refusal):
        ctx.guard.release(adm.reservation)
        ctx.rate_limiter.correct(adm.key_id, adm.prompt_bound + adm.max_output_tokens, 0)
        raise job_refusal(job, hold, adm.reservation.amount)
    return partial(guard.settle_part, hold)
