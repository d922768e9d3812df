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

from eventsourcing.application import AggregateNotFoundError, Application, LRUCache, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Recording,
    Tracking,
)
from eventsourcing.utils import resolve_topic

from domain.budget import Budget, local_day
from domain.errors import DomainError
from domain.jobs import Job, JobStatus
from domain.ports.clock import Clock
from domain.quota_policy import BudgetPolicy, Scope
from domain.services.acting import RecordsActor
from domain.services.transcodings import BudgetPolicyAsDict, SetAsList
from domain.services.usage_log import USAGE_BATCH_TOPIC as USAGE_BATCH_TOPIC  # its home before
from domain.services.usage_log import UsageLog
from domain.usage import RequestMetered, UsageBatch

PURPOSE_TAG = "purpose"  # a request's tag naming what a job's call was for (gateway/api/jobs_call.py)
LATEST = 2**62  # a version past any real one: "read it from the store, not the cache"


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


class Ledger(UsageLog, RecordsActor, Application):
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
        transcoder.register(BudgetPolicyAsDict())
        transcoder.register(SetAsList())

    def construct_recorder(self):  # type: ignore[no-untyped-def]
        """A process recorder that also indexes fact ids, so events, bus positions and the
        facts' ids commit together. Which class is the store adapter's choice
        (LEDGER_PROCESS_RECORDER_TOPIC); the in-memory factory ignores that setting."""
        recorder = self.factory.process_recorder()
        topic = self.env.get("PROCESS_RECORDER_TOPIC")
        if topic and not isinstance(recorder, resolve_topic(topic)):
            recorder = resolve_topic(topic)()
        if not hasattr(recorder, "existing_fact_ids"):
            raise TypeError("the ledger needs a recorder that indexes fact ids; set "
                            "LEDGER_PROCESS_RECORDER_TOPIC (adapters/eventstore/environments.py does)")
        return recorder

    # ----- usage ---------------------------------------------------------------------------

    def record_usage(self, facts: Sequence[RequestMetered],
                     position: BusPosition | None = None) -> BatchResult:
        """Records a batch of facts, and the bus position after it, exactly once."""
        if position is not None and self.recorder.has_tracking_id(
                position.tracking.application_name, position.next_offset):
            return BatchResult(0, len(facts), already_applied=True)
        unique = list({f.event_id: f for f in facts}.values())
        stored: set[str] = set()
        for _attempt in range(4):
            fresh = [f for f in unique if f.event_id not in stored]
            try:
                self._commit(self._aggregates_for(fresh, position), position,
                             fact_ids=[f.event_id for f in fresh])
                return BatchResult(len(fresh), len(facts) - len(fresh))
            except IntegrityError:
                if position is not None and self.recorder.has_tracking_id(
                        position.tracking.application_name, position.next_offset):
                    return BatchResult(0, len(facts), already_applied=True)
                # Either facts of this batch are stored already (redelivery), or another
                # writer moved a cached budget on: drop the former, reload the latter, retry.
                stored = self.recorder.existing_fact_ids([f.event_id for f in unique])
                self._evict_cache()
        raise IntegrityError("usage batch kept conflicting with concurrent writers; retry it")

    def _record(self, processing_event: ProcessingEvent) -> list[Recording]:
        """Stores a command's events; if that fails, drops the cache as well: commands change
        cached aggregates in place (no deep copies), so a copy that was never saved would
        otherwise carry its spend into the retried batch, counted twice."""
        try:
            return super()._record(processing_event)
        except BaseException:
            self._evict_cache()
            raise

    def _evict_cache(self) -> None:
        # A fresh cache: LRUCache.clear() in eventsourcing 9.5 resets its recency list but
        # keeps the entries, so stale copies would survive it.
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            self.repository.cache = LRUCache(cache.maxsize)
        elif cache is not None:
            self.repository.cache = type(cache)()

    def position(self, topic: str, partition: int) -> int:
        """The next offset to consume from a topic partition (0 when nothing was recorded)."""
        return self.recorder.max_tracking_id(f"{topic}:{partition}") or 0

    def _aggregates_for(self, facts: Sequence[RequestMetered],
                        position: BusPosition | None) -> list[Aggregate | Any]:
        now = self.clock.now()
        if not facts:
            return []
        where = f"{position.topic}:{position.partition}@{position.next_offset}" if position else None
        # The batch goes in as its event alone: as an aggregate the library would keep it in
        # the repository cache, thousands of rows at a time.
        aggregates: list[Aggregate | Any] = [*UsageBatch.of(facts, where).collect_events()]
        spend: dict[tuple[Scope, str], dict[str, list[RequestMetered]]] = defaultdict(
            lambda: defaultdict(list))
        for fact in facts:
            day = local_day(fact.occurred_at, self.billing_tz)
            for scope in scopes_of(fact):
                spend[scope][day].append(fact)
        for (scope, scope_id), days in spend.items():
            budget = self.open_budget(scope, scope_id)
            for day, group in sorted(days.items()):
                budget.accrue(sum(f.cost for f in group), sum(f.requests for f in group), day, now,
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
            if job is None or job.team_id != fact.team_id:
                # an unknown job id is kept on the request, not invented here; another team's job
                # never takes the call (the gateway refuses such requests; this holds without it)
                continue
            job.record_call(fact.event_id, fact.cost, fact.prompt_tokens,
                            fact.completion_tokens, now, calls=fact.requests, call_id=fact.request,
                            model=fact.model, purpose=fact.labels.get(PURPOSE_TAG),
                            latency_ms=fact.latency_ms)
            jobs[fact.job_id] = job
        return list(jobs.values())

    def _commit(self, aggregates: Sequence[Aggregate | Any], position: BusPosition | None,
                **recorder_kwargs: Any) -> None:
        processing = ProcessingEvent(position.tracking if position else None)
        processing.collect_events(*aggregates, **recorder_kwargs)
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
        def change(budget: Budget) -> None:
            budget.set_policy(policy, self.clock.now())
        return self._change_budget(scope, scope_id, change)

    def remove_budget(self, scope: Scope, scope_id: str) -> Budget:
        return self._change_budget(scope, scope_id, lambda b: b.remove_policy(self.clock.now()))

    def _change_budget(self, scope: Scope, scope_id: str, change: Any) -> Budget:
        """Applies a command to a budget, retrying if another writer got there first."""
        for attempt in range(5):
            budget = self.open_budget(scope, scope_id) if attempt == 0 else self._fresh_budget(
                scope, scope_id)
            change(budget)
            try:
                self.save(budget)
                return budget
            except IntegrityError:
                self._evict_cache()
        raise IntegrityError(f"budget {scope}/{scope_id} kept changing under this command; retry it")

    def _fresh_budget(self, scope: Scope, scope_id: str) -> Budget:
        return self.budget(scope, scope_id) or Budget(scope=scope, scope_id=scope_id,
                                                      tz=self.billing_tz, at=self.clock.now())

    def budget(self, scope: Scope, scope_id: str) -> Budget | None:
        """The budget as stored now (never a cached copy another process may have outdated)."""
        try:
            return self.repository.get(Budget.id_for(scope, scope_id), version=LATEST)
        except AggregateNotFoundError:
            return None

    def observe_budgets(self, budget_ids: Iterable[UUID]) -> int:
        """Rolls periods over and closes expired grace windows; returns events recorded."""
        recorded = 0
        for budget_id in budget_ids:
            for _attempt in range(5):
                budget = self.repository.get(budget_id, version=LATEST)
                budget.observe(self.clock.now())
                pending = len(budget.pending_events)
                if not pending:
                    break
                try:
                    self.save(budget)
                    recorded += pending
                    break
                except IntegrityError:
                    continue
        return recorded

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
