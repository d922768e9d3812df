"""Jobs: one customer task of a SaaS backend that makes several LLM calls."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError


class JobStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Job(Aggregate):
    TOPIC = "meterline.Job"

    class Created(Aggregate.Created):
        TOPIC = "meterline.Job.Created"

    @classmethod
    def create_id(cls, job_id: UUID) -> UUID:
        return job_id

    @event("JobCreated", topic="meterline.JobCreated")
    def __init__(self, job_id: UUID, team_id: str | None, user_id: str, job_type: str,
                 metadata: dict[str, Any], at: datetime) -> None:
        self.team_id = team_id
        self.user_id = user_id
        self.job_type = job_type
        self.metadata = dict(metadata)
        self.status = JobStatus.RUNNING
        self.calls = 0
        self.cost = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.recorded: set[str] = set()
        self.error: str | None = None

    def record_call(self, request_id: str, cost: int, prompt_tokens: int,
                    completion_tokens: int, at: datetime, calls: int = 1) -> None:
        """Adds a metered fact of a call; a fact already recorded is ignored (redelivery).

        `calls` is 0 for the later parts of a call metered in several facts (a long stream)."""
        if request_id in self.recorded:
            return
        self._call_recorded(request_id=request_id, cost=cost, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, at=at, calls=calls)

    def complete(self, status: JobStatus, error: str | None, metadata: dict[str, Any],
                 at: datetime) -> None:
        if self.status is not JobStatus.RUNNING:
            raise DomainError(f"job is already {self.status}; a job completes once")
        if JobStatus(status) is JobStatus.RUNNING:
            raise DomainError("status must be 'completed' or 'failed'")
        self._completed(status=str(status), error=error, metadata=dict(metadata), calls=self.calls,
                        cost=self.cost, prompt_tokens=self.prompt_tokens,
                        completion_tokens=self.completion_tokens, at=at)

    @event("JobCallRecorded", topic="meterline.JobCallRecorded")
    def _call_recorded(self, request_id: str, cost: int, prompt_tokens: int,
                       completion_tokens: int, at: datetime, calls: int = 1) -> None:
        self.recorded.add(request_id)
        self.calls += calls
        self.cost += cost
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    @event("JobCompleted", topic="meterline.JobCompleted")
    def _completed(self, status: str, error: str | None, metadata: dict[str, Any], calls: int,
                   cost: int, prompt_tokens: int, completion_tokens: int, at: datetime) -> None:
        self.status = JobStatus(status)
        self.error = error
        self.metadata.update(metadata)
