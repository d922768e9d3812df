"""Jobs by team, read from the ledger's log: what a team's usage and its job list are built
from. It follows the log's job events from where it stopped, so a query pays only for the
events since the last one; any process holding the ledger's store may keep one."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from domain.jobs import JobStatus
from domain.services.ledger import Ledger

TOPICS = ("meterline.JobCreated", "meterline.JobCallRecorded", "meterline.JobCompleted")
PAGE = 1000


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    team_id: str | None
    user_id: str
    job_type: str
    status: JobStatus
    created_at: datetime
    completed_at: datetime | None
    calls: int
    tokens: int
    cost: int
    customer_price: int | None


class JobIndex:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()
        self._next = 1
        self._jobs: dict[str, JobSummary] = {}
        self._by_team: dict[str | None, list[str]] = {}

    def of_team(self, team_id: str) -> list[JobSummary]:
        """The team's jobs as the log holds them now, oldest first."""
        with self._lock:
            self._catch_up()
            return [self._jobs[j] for j in self._by_team.get(team_id, ())]

    def _catch_up(self) -> None:
        log, mapper = self._ledger.notification_log, self._ledger.mapper
        while page := log.select(start=self._next, limit=PAGE, topics=TOPICS):
            for notification in page:
                self._apply(mapper.to_domain_event(notification))
            self._next = page[-1].id + 1
            if len(page) < PAGE:
                return

    def _apply(self, event: Any) -> None:
        job_id = str(event.originator_id)
        kind = type(event).__name__
        if kind == "JobCreated":
            self._jobs[job_id] = JobSummary(job_id, event.team_id, event.user_id, event.job_type,
                                            JobStatus.RUNNING, event.at, None, 0, 0, 0, None)
            self._by_team.setdefault(event.team_id, []).append(job_id)
            return
        job = self._jobs.get(job_id)
        if job is None:
            return
        if kind == "JobCallRecorded":
            # `calls` came after the first stored calls: a call stored without it counted one
            self._jobs[job_id] = replace(job, calls=job.calls + getattr(event, "calls", 1),
                                         cost=job.cost + event.cost,
                                         tokens=job.tokens + event.prompt_tokens + event.completion_tokens)
        elif kind == "JobCompleted":
            self._jobs[job_id] = replace(job, status=JobStatus(event.status), completed_at=event.at,
                                         customer_price=getattr(event, "customer_price", None))
