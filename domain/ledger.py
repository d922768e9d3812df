"""The ledger application: metered requests, spend accounts per scope, and jobs.

A batch of RequestMetered facts is recorded in one transaction together with the bus
position it came from (a tracking record), so a batch is applied exactly once; a fact
already stored (same event id) cannot be stored again, so redelivered copies are dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Tracking, Transcoding

from domain.budget import Budget, local_day
from domain.clock import Clock
from domain.errors import DomainError
from domain.jobs import Job, JobStatus
from domain.periods import Period
from domain.quota_policy import BudgetPolicy, Mode, Scope
from domain.usage import MeteredRequest, RequestMetered


@dataclass(frozen=True)
class BusPosition:
    """Where a batch ends on the bus: the next offset to read from a topic partition."""

    topic: str
    partition: int
    next_offset: int

    @property
    def tracking(self) -> Tracking:
        return Tracking(application_name=f"{self.topic}:{self.partition}",
                        notification_id=self.next_offset)


@dataclass(frozen=True)
class BatchResult:
    recorded: int
    duplicates: int
    already_applied: bool = False


def scopes_of(fact: RequestMetered) -> list[tuple[Scope, str]]:
    """Every budget scope a request falls under."""
    scopes = [(Scope.KEY, fact.key_id), (Scope.USER, fact.user_id)]
    if fact.team_id:
        scopes.append((Scope.TEAM, fact.team_id))
    return scopes


class Ledger(Application):
    name = "ledger"
    log_section_size = 5000
    snapshotting_intervals = {Budget: 500}  # noqa: RUF012 - the library's own class attribute

    def __init__(self, clock: Clock, billing_tz: str = "UTC",
                 env: dict[str, Any] | None = None) -> None:
        super().__init__(env)
        self.clock = clock
        self.billing_tz = billing_tz

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Budget snapshots hold a policy and a set of crossed thresholds: both need transcoding."""
        super().register_transcodings(transcoder)
        transcoder.register(_BudgetPolicyAsDict())
        transcoder.register(_SetAsList())

    def construct_recorder(self):  # type: ignore[no-untyped-def]
        """A process recorder, so events and bus positions commit together."""
        return self.factory.process_recorder()

    # ----- usage ---------------------------------------------------------------------------

    def record_usage(self, facts: Sequence[RequestMetered],
                     position: BusPosition | None = None) -> BatchResult:
        """Records a batch of facts, and the bus position after it, exactly once."""
        if position is not None and self.recorder.has_tracking_id(
                position.tracking.application_name, position.next_offset):
            return BatchResult(0, len(facts), already_applied=True)
        unique = list({f.event_id: f for f in facts}.values())
        stored: set[str] = set()
        for attempt in range(4):
            fresh = [f for f in unique if f.event_id not in stored]
            try:
                self._commit(self._aggregates_for(fresh), position)
                return BatchResult(len(fresh), len(facts) - len(fresh))
            except IntegrityError:
                if position is not None and self.recorder.has_tracking_id(
                        position.tracking.application_name, position.next_offset):
                    return BatchResult(0, len(facts), already_applied=True)
                # Another writer may have moved a cached budget on: reload and retry first.
                self._evict_cache()
                if attempt >= 1:
                    # Still refused: some facts are stored already (redelivery). Slow path.
                    stored = {f.event_id for f in unique if UUID(f.event_id) in self.repository}
        raise IntegrityError("usage batch kept conflicting with concurrent writers; retry it")

    def _evict_cache(self) -> None:
        cache = self.repository.cache
        if cache is not None and hasattr(cache, "clear"):
            cache.clear()

    def position(self, topic: str, partition: int) -> int:
        """The next offset to consume from a topic partition (0 when nothing was recorded)."""
        return self.recorder.max_tracking_id(f"{topic}:{partition}") or 0

    def _aggregates_for(self, facts: Sequence[RequestMetered]) -> list[Aggregate]:
        now = self.clock.now()
        aggregates: list[Aggregate] = [MeteredRequest(data=f.to_data()) for f in facts]
        spend: dict[tuple[Scope, str], dict[str, list[RequestMetered]]] = defaultdict(
            lambda: defaultdict(list))
        for fact in facts:
            day = local_day(fact.occurred_at, self.billing_tz)
            for scope in scopes_of(fact):
                spend[scope][day].append(fact)
        for (scope, scope_id), days in spend.items():
            budget = self.open_budget(scope, scope_id)
            for day, group in sorted(days.items()):
                budget.accrue(sum(f.cost for f in group), len(group), day, now,
                              [f.event_id for f in group])
            aggregates.append(budget)
        aggregates.extend(self._job_calls(facts, now))
        return aggregates

    def _job_calls(self, facts: Iterable[RequestMetered], now: datetime) -> list[Job]:
        jobs: dict[str, Job] = {}
        for fact in facts:
            if not fact.job_id:
                continue
            job = jobs.get(fact.job_id) or self._find_job(fact.job_id)
            if job is None:
                continue  # an unknown job id is kept on the request, not invented here
            job.record_call(fact.event_id, fact.cost, fact.prompt_tokens,
                            fact.completion_tokens, now)
            jobs[fact.job_id] = job
        return list(jobs.values())

    def _commit(self, aggregates: Sequence[Aggregate], position: BusPosition | None) -> None:
        processing = ProcessingEvent(position.tracking if position else None)
        processing.collect_events(*aggregates)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)

    # ----- budgets -------------------------------------------------------------------------

    def open_budget(self, scope: Scope, scope_id: str) -> Budget:
        """The spend account of a scope, opened on first use."""
        try:
            return self.repository.get(Budget.id_for(scope, scope_id))
        except AggregateNotFoundError:
            return Budget(scope=scope, scope_id=scope_id, tz=self.billing_tz, at=self.clock.now())

    def set_budget(self, scope: Scope, scope_id: str, policy: BudgetPolicy) -> Budget:
        budget = self.open_budget(scope, scope_id)
        budget.set_policy(policy, self.clock.now())
        self.save(budget)
        return budget

    def remove_budget(self, scope: Scope, scope_id: str) -> Budget:
        budget = self.open_budget(scope, scope_id)
        budget.remove_policy(self.clock.now())
        self.save(budget)
        return budget

    def budget(self, scope: Scope, scope_id: str) -> Budget | None:
        try:
            return self.repository.get(Budget.id_for(scope, scope_id))
        except AggregateNotFoundError:
            return None

    def observe_budgets(self, budget_ids: Iterable[UUID]) -> int:
        """Rolls periods over and closes expired grace windows; returns events recorded."""
        now = self.clock.now()
        changed = []
        for budget_id in budget_ids:
            budget = self.repository.get(budget_id)
            budget.observe(now)
            if budget.pending_events:
                changed.append(budget)
        count = sum(len(b.pending_events) for b in changed)
        if changed:
            self.save(*changed)
        return count

    # ----- jobs ----------------------------------------------------------------------------

    def create_job(self, user_id: str, team_id: str | None, job_type: str,
                   metadata: dict[str, Any], job_id: UUID | None = None) -> Job:
        job = Job(team_id=team_id, user_id=user_id, job_type=job_type, metadata=metadata,
                  at=self.clock.now(), job_id=job_id or uuid4())
        self.save(job)
        return job

    def complete_job(self, job_id: UUID, status: JobStatus, error: str | None = None,
                     metadata: dict[str, Any] | None = None) -> Job:
        job = self._find_job(str(job_id))
        if job is None:
            raise DomainError(f"job {job_id} does not exist")
        job.complete(status, error, metadata or {}, self.clock.now())
        self.save(job)
        return job

    def job(self, job_id: UUID) -> Job | None:
        return self._find_job(str(job_id))

    def _find_job(self, job_id: str) -> Job | None:
        try:
            found = self.repository.get(UUID(job_id))
        except (AggregateNotFoundError, ValueError):
            return None
        return found if isinstance(found, Job) else None


class _BudgetPolicyAsDict(Transcoding):
    type = BudgetPolicy
    name = "meterline_budget_policy"

    def encode(self, obj: BudgetPolicy) -> dict[str, Any]:
        return {"limit": obj.limit, "period": str(obj.period), "mode": str(obj.mode),
                "grace_percent": obj.grace_percent, "grace_hours": obj.grace_hours,
                "version": obj.version}

    def decode(self, data: dict[str, Any]) -> BudgetPolicy:
        return BudgetPolicy(data["limit"], Period(data["period"]), Mode(data["mode"]),
                            data["grace_percent"], data["grace_hours"], data["version"])


class _SetAsList(Transcoding):
    type = set
    name = "meterline_set"

    def encode(self, obj: set[Any]) -> list[Any]:
        return sorted(obj)

    def decode(self, data: list[Any]) -> set[Any]:
        return set(data)
