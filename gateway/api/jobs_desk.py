"""The job-cost API's state in one gateway process: the job commands on the ledger's store,
the jobs-by-team index, each job's cap and calls in flight, and the webhook tasks running."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from domain.services.job_index import JobIndex
from domain.services.job_states import JobStates
from domain.services.jobs import Jobs
from gateway.api.jobs_guard import JobGuard
from gateway.context import GatewayContext


@dataclass
class JobsDesk:
    jobs: Jobs
    index: JobIndex
    states: JobStates
    guard: JobGuard = field(default_factory=JobGuard)
    deliveries: set[asyncio.Task[None]] = field(default_factory=set)  # kept until they finish


def desk(ctx: GatewayContext) -> JobsDesk:
    """The context's desk, made on first use (on the event loop, so once)."""
    if ctx.jobs is None:
        ctx.jobs = JobsDesk(Jobs(ctx.ledger), JobIndex(ctx.ledger), JobStates(ctx.ledger))
    return ctx.jobs
