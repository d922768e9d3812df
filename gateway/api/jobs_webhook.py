"""A signed webhook to the team's URL when one of its jobs ends, sent off the request path.

The notifier is the alerts' webhook channel (CloudEvents envelope, `X-Meterline-Signature`,
`webhook-id` = "job-<id>-ended", docs/webhooks.md) with the team's derived secret
(`domain.job_terms.job_webhook_secret`). A failed delivery is tried again with the alerts'
backoff; deliveries live in this process only, so a restart drops those not yet sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from domain.alerts.retry import RetrySchedule
from domain.job_terms import job_webhook_secret
from domain.jobs import Job
from domain.ports.notifier import Notification, NotificationFailed
from gateway.api.jobs_desk import desk
from gateway.context import GatewayContext

log = logging.getLogger(__name__)
EVENT_TYPE = "meterline.job.completed"
SCHEDULE = RetrySchedule(max_attempts=5, base_s=1.0)


def announce(ctx: GatewayContext, job: Job, summary: dict[str, Any]) -> None:
    """Starts the delivery in the background; nothing when there is no channel or no job team."""
    if ctx.job_notifier is None or not job.team_id:
        return
    task = asyncio.get_running_loop().create_task(_deliver(ctx, job, summary))
    deliveries = desk(ctx).deliveries
    deliveries.add(task)
    task.add_done_callback(deliveries.discard)


async def _deliver(ctx: GatewayContext, job: Job, summary: dict[str, Any]) -> None:
    terms = await ctx.query(desk(ctx).jobs.terms, job.team_id)
    if terms is None or not terms.webhook_url:
        return
    data = {**summary, "team_id": job.team_id, "job_type": job.job_type, "user_id": job.user_id,
            "completed_at": job.completed_at.isoformat() if job.completed_at else None}
    notification = Notification(
        notification_id=f"job-{job.id}-ended", recipient=terms.webhook_url,
        subject=f"job {job.id} ({job.job_type}) {job.status}",
        body={"type": EVENT_TYPE, "data": data,
              "text": f"Job {job.id} ({job.job_type}) of team {job.team_id} {job.status}: "
                      f"{summary['costs']['total_calls']} calls, ${summary['costs']['total_cost_usd']}."},
        signing_secret=job_webhook_secret(ctx.server_secret, job.team_id, terms.webhook_version))
    for attempt in range(1, SCHEDULE.max_attempts + 1):
        try:
            await ctx.job_notifier.notify(notification)
            return
        except NotificationFailed as exc:
            if exc.permanent or attempt == SCHEDULE.max_attempts:
                log.warning("job webhook for %s not delivered after %d attempt(s): %s", job.id,
                            attempt, exc)
                return
        await asyncio.sleep(SCHEDULE.delay_s(attempt, random.random()))  # noqa: S311 - jitter


async def drain(ctx: GatewayContext, wait_s: float = 5.0) -> None:
    """At shutdown: gives deliveries under way `wait_s` to finish, then closes the channel."""
    pending = desk(ctx).deliveries if ctx.jobs is not None else set()
    if pending:
        _done, late = await asyncio.wait(list(pending), timeout=wait_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d job webhook(s) not delivered: the gateway stopped", len(late))
    close = getattr(ctx.job_notifier, "aclose", None)
    if close is not None:
        await close()
