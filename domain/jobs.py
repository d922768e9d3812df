"""Jobs: one customer task of a SaaS backend that makes several LLM calls.

Events grew fields over time; every added field has a default, so a job stored before it
(tests/fixtures/store_before_layout) still loads: `max_cost` (the job's own cap), a call's
`call_id`, `model`, `purpose` and `latency_ms`, and the completion's `customer_price` and
`pricing` (the customer-pricing rule that priced it, as stored, so a later change of the team's
pricing never re-prices a completed job).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class JobCall:
    """One LLM call of a job as the breakdown shows it (a long stream's parts summed)."""

    call_id: str
    model: str | None
    purpose: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int | None
    cost: int


class Job(Aggregate):
    TOPIC = "meterline.Job"

    class Created(Aggregate.Created):
        TOPIC = "meterline.Job.Created"

    @classmethod
    def create_id(cls, job_id: UUID) -> UUID:
        return job_id

    @event("JobCreated", topic="meterline.JobCreated")
    def __init__(self, job_id: UUID, team_id: str | None, user_id: str, job_type: str,
                 metadata: dict[str, Any], at: datetime, max_cost: int | None = None) -> None:
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
        self.max_cost = max_cost
        self.created_at = at
        self.completed_at: datetime | None = None
        self.call_log: list[dict[str, Any]] = []
        self.customer_price: int | None = None
        self.pricing: dict[str, Any] | None = None

    def record_call(self, request_id: str, cost: int, prompt_tokens: int,
                    completion_tokens: int, at: datetime, calls: int = 1, *,
                    call_id: str | None = None, model: str | None = None,
                    purpose: str | None = None, latency_ms: int | None = None) -> None:
        """Adds a metered fact of a call; a fact already recorded is ignored (redelivery).

        `calls` is 0 for the later parts of a call metered in several facts (a long stream);
        `call_id` names the call the parts belong to (the fact's request id). A call metered
        after the job completed still counts: it was admitted while the job ran."""
        if request_id in self.recorded:
            return
        self._call_recorded(request_id=request_id, cost=cost, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, at=at, calls=calls,
                            call_id=call_id, model=model, purpose=purpose, latency_ms=latency_ms)

    def complete(self, status: JobStatus, error: str | None, metadata: dict[str, Any],
                 at: datetime, customer_price: int | None = None,
                 pricing: dict[str, Any] | None = None) -> None:
        if self.status is not JobStatus.RUNNING:
            raise DomainError(f"job is already {self.status}; a job completes once")
        if JobStatus(status) is JobStatus.RUNNING:
            raise DomainError("status must be 'completed' or 'failed'")
        self._completed(status=str(status), error=error, metadata=dict(metadata), calls=self.calls,
                        cost=self.cost, prompt_tokens=self.prompt_tokens,
                        completion_tokens=self.completion_tokens, at=at,
                        customer_price=customer_price, pricing=pricing)

    def breakdown(self) -> list[JobCall]:
        """The job's calls in the order they were recorded, parts of one call summed."""
        merged: dict[str, dict[str, Any]] = {}
        for entry in self.call_log:
            known = merged.get(entry["call_id"])
            if known is None:
                merged[entry["call_id"]] = dict(entry)
                continue
            for field in ("prompt_tokens", "completion_tokens", "cost"):
                known[field] += entry[field]
            known["latency_ms"] = entry["latency_ms"] if entry["latency_ms"] is not None \
                else known["latency_ms"]
        return [JobCall(**m) for m in merged.values()]

    @event("JobCallRecorded", topic="meterline.JobCallRecorded")
    def _call_recorded(self, request_id: str, cost: int, prompt_tokens: int,
                       completion_tokens: int, at: datetime, calls: int = 1,
                       call_id: str | None = None, model: str | None = None,
                       purpose: str | None = None, latency_ms: int | None = None) -> None:
        self.recorded.add(request_id)
        self.calls += calls
        self.cost += cost
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.call_log.append({"call_id": call_id or request_id, "model": model, "purpose": purpose,
                              "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "latency_ms": latency_ms, "cost": cost})

    @event("JobCompleted", topic="meterline.JobCompleted")
    def _completed(self, status: str, error: str | None, metadata: dict[str, Any], calls: int,
                   cost: int, prompt_tokens: int, completion_tokens: int, at: datetime,
                   customer_price: int | None = None, pricing: dict[str, Any] | None = None) -> None:
        self.status = JobStatus(status)
        self.error = error
        self.metadata.update(metadata)
        self.completed_at = at
        self.customer_price = customer_price
        self.pricing = pricing
