"""Before a job completes, its calls must be in its totals: the calls this gateway still has
in flight, and those it metered that the ledger has not recorded on the job yet (the ledger
records a job's calls from the metered facts, a moment after the answer went out)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from uuid import UUID

from gateway import errors
from gateway.api.jobs_access import job_state
from gateway.api.jobs_desk import desk
from gateway.context import GatewayContext

POLL_S = 0.02
LEDGER_WAIT_S = 10.0  # past the calls in flight: the ledger records a batch within milliseconds
READ_WAIT_S = 2.0     # a cost read waits this long at most for calls this gateway already answered


async def settle_calls(ctx: GatewayContext, job_id: UUID) -> None:
    """Returns once the job's calls from this gateway are all recorded; 503 if the ledger lags."""
    guard = desk(ctx).guard
    deadline = time.monotonic() + ctx.options.upstream_timeout_s + LEDGER_WAIT_S
    while True:
        in_flight, unrecorded = guard.pending(str(job_id))
        if not in_flight and not unrecorded:
            return
        if time.monotonic() > deadline:
            raise errors.GatewayError(
                503, f"{in_flight} call(s) of this job are still running and {unrecorded} are not yet "
                "recorded by the ledger, so its totals would be short; retry the completion shortly",
                "api_error", "job_calls_pending")
        await asyncio.sleep(POLL_S)
        if unrecorded:
            await job_state(ctx, job_id)


async def recorded_calls(ctx: GatewayContext, job_ids: Collection[UUID], wait_s: float = READ_WAIT_S) -> bool:
    """Returns once the calls this gateway metered on the jobs are recorded on them, or after
    `wait_s`: a caller who just had a call's answer sees it in the job's costs and the team's usage
    (read your writes), and a lagging ledger delays the read a little, never fails it. Calls in
    flight are not waited for. True if there was anything to wait for."""
    guard = desk(ctx).guard
    waiting = [job_id for job_id in job_ids if guard.pending(str(job_id))[1]]
    had = bool(waiting)
    deadline = time.monotonic() + wait_s
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        for job_id in waiting:
            await job_state(ctx, job_id)
        waiting = [job_id for job_id in waiting if guard.pending(str(job_id))[1]]
    return had
