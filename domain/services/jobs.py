"""Job commands on the ledger's store: create, complete (priced by the team's terms), and the
team's terms. Every command reads the job as stored (not a cached copy the ledger's consumer
may be changing) and retries when another writer got there first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.errors import DomainError
from domain.job_pricing import Rule
from domain.job_terms import TeamJobTerms
from domain.jobs import Job, JobStatus
from domain.services.ledger import LATEST, Ledger

ATTEMPTS = 8


class JobNotFound(DomainError):
    """No such job."""


class JobNotRunning(DomainError):
    """The job completed or failed already."""


@dataclass(frozen=True)
class Priced:
    customer_price: int | None
    pricing: dict[str, Any] | None


class Jobs:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def create(self, user_id: str, team_id: str, job_type: str, metadata: dict[str, Any],
               max_cost: int | None = None, job_id: UUID | None = None) -> Job:
        job = Job(team_id=team_id, user_id=user_id, job_type=job_type, metadata=metadata,
                  at=self.ledger.clock.now(), job_id=job_id or uuid4(), max_cost=max_cost)
        self.ledger.save(job)
        return job

    def job(self, job_id: UUID | str) -> Job | None:
        """The job as stored now."""
        try:
            found = self.ledger.repository.get(UUID(str(job_id)), version=LATEST)
        except (AggregateNotFoundError, ValueError):
            return None
        return found if isinstance(found, Job) else None

    def complete(self, job_id: UUID, status: JobStatus, error: str | None,
                 metadata: dict[str, Any]) -> Job:
        """Ends a running job, priced by its team's terms in force now; raises JobNotFound or
        JobNotRunning (a job completes once)."""
        for _attempt in range(ATTEMPTS):
            job = self.job(job_id)
            if job is None:
                raise JobNotFound(f"job {job_id} does not exist")
            if job.status is not JobStatus.RUNNING:
                raise JobNotRunning(f"job {job_id} is already {job.status}; a job completes once")
            priced = self.price(job)
            job.complete(status, error, metadata, self.ledger.clock.now(),
                         customer_price=priced.customer_price, pricing=priced.pricing)
            try:
                self.ledger.save(job)
                return job
            except IntegrityError:
                continue  # the ledger recorded a call meanwhile: read it again
        raise IntegrityError(f"job {job_id} kept changing while it was completed; retry")

    def price(self, job: Job) -> Priced:
        """What the team charges its customer for the job so far, by the rule in force."""
        terms = self.terms(job.team_id) if job.team_id else None
        found = terms.rule_for(job.job_type) if terms else None
        if found is None:
            return Priced(None, None)
        rule, stored = found
        return Priced(rule.price_of(job.cost, job.prompt_tokens + job.completion_tokens), stored)

    # ----- a team's terms --------------------------------------------------------------------

    def terms(self, team_id: str) -> TeamJobTerms | None:
        try:
            return self.ledger.repository.get(TeamJobTerms.id_for(team_id), version=LATEST)
        except AggregateNotFoundError:
            return None

    def set_pricing(self, team_id: str, job_types: dict[str, Rule], default: Rule | None) -> TeamJobTerms:
        stored = {name: rule.as_dict() for name, rule in job_types.items()}
        return self._change_terms(team_id, lambda t, at: t.set_pricing(
            stored, default.as_dict() if default else None, at))

    def set_webhook(self, team_id: str, url: str | None) -> TeamJobTerms:
        return self._change_terms(team_id, lambda t, at: t.set_webhook(url, at))

    def _change_terms(self, team_id: str, change: Any) -> TeamJobTerms:
        for _attempt in range(ATTEMPTS):
            now = self.ledger.clock.now()
            terms = self.terms(team_id) or TeamJobTerms(team_id=team_id, at=now)
            change(terms, now)
            try:
                self.ledger.save(terms)
                return terms
            except IntegrityError:
                continue
        raise IntegrityError(f"the job terms of team {team_id} kept changing; retry")
