"""The ledger on every event store: batches, positions, spend, jobs, snapshots, caching, failed commits."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import pytest
from eventsourcing.persistence import OperationalError

from adapters.clock import FixedClock
from domain.budget import Budget, local_day
from domain.errors import DomainError
from domain.jobs import JobStatus
from domain.periods import Period
from domain.quota_policy import BudgetPolicy, Mode, Scope
from domain.services.ledger import BusPosition, Ledger
from domain.services.registry import Registry
from tests.support.stores import DOLLAR, START, OpenStore, fold, issue, metered, seed_registry, state
from tests.support.stores import apps as apps  # fixtures, used by name
from tests.support.stores import clock as clock
from tests.support.stores import open_store as open_store

# ----- ledger ----------------------------------------------------------------------------------


def test_a_batch_at_a_bus_position_is_applied_once(apps: tuple[Registry, Ledger]) -> None:
    _, ledger = apps
    batch = [metered(n, at=START, cost=1_000 * n) for n in range(1, 4)]
    position = BusPosition("meterline.usage", 0, next_offset=3)

    first = ledger.record_usage(batch, position)
    again = ledger.record_usage(batch, position)

    assert (first.recorded, first.duplicates, first.already_applied) == (3, 0, False)
    assert (again.recorded, again.already_applied) == (0, True)
    for scope, scope_id in ((Scope.KEY, "k1"), (Scope.USER, "u1"), (Scope.TEAM, "t1")):
        assert ledger.budget(scope, scope_id).total_spent == 6_000
    assert ledger.position("meterline.usage", 0) == 3


def test_redelivered_facts_at_a_new_position_are_counted_once(
        apps: tuple[Registry, Ledger]) -> None:
    _, ledger = apps
    ledger.record_usage([metered(n, at=START, cost=10 * n) for n in (1, 2, 3)],
                        BusPosition("meterline.usage", 0, 3))

    # The producer retried: copies of requests 2 and 3 arrive again, with request 4, later on.
    redelivered = [metered(n, at=START, cost=10 * n) for n in (2, 3, 4, 4)]
    result = ledger.record_usage(redelivered, BusPosition("meterline.usage", 0, 7))

    assert (result.recorded, result.duplicates, result.already_applied) == (1, 3, False)
    assert ledger.budget(Scope.KEY, "k1").total_spent == 10 + 20 + 30 + 40
    assert ledger.position("meterline.usage", 0) == 7
    assert sorted(f.event_id for f in ledger.metered_facts()) == sorted(
        metered(n, at=START, cost=10 * n).event_id for n in (1, 2, 3, 4))
    assert ledger.count_metered() == 4


def test_positions_resume_per_topic_partition(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    _, ledger = apps
    assert ledger.position("meterline.usage", 0) == 0
    ledger.record_usage([metered(1, at=START, cost=5)], BusPosition("meterline.usage", 0, 1))
    ledger.record_usage([metered(2, at=START, cost=5)], BusPosition("meterline.usage", 1, 40))
    ledger.record_usage([metered(3, at=START, cost=5)], BusPosition("meterline.usage", 0, 9))
    ledger.record_usage([], BusPosition("meterline.usage", 2, 17))  # an empty batch still advances

    _, reopened = open_store()
    positions = [reopened.position("meterline.usage", p) for p in range(4)]
    assert positions == [9, 40, 17, 0]
    assert reopened.position("other.topic", 0) == 0
    assert reopened.record_usage([metered(1, at=START, cost=5)],
                                 BusPosition("meterline.usage", 0, 5)).already_applied


def test_spend_per_scope_equals_the_sum_of_costs(
        apps: tuple[Registry, Ledger], clock: FixedClock) -> None:
    _, ledger = apps
    rng = random.Random(20250303)
    owners = {"k1": ("u1", "t1"), "k2": ("u1", "t1"), "k3": ("u2", "t1"), "k4": ("u3", None)}
    facts = []
    for n in range(60):
        key = rng.choice(sorted(owners))
        user, team = owners[key]
        at = START + timedelta(days=rng.randrange(20), minutes=rng.randrange(24 * 60))
        facts.append(metered(n, at=at, cost=rng.randrange(0, 5 * DOLLAR), key=key, user=user,
                             team=team))
    clock.set(START + timedelta(days=21))
    offset = 0
    for size in (1, 7, 13, 2, 20, 17):
        ledger.record_usage(facts[offset:offset + size],
                            BusPosition("meterline.usage", 0, offset + size))
        offset += size
    assert offset == len(facts)

    expected: Counter[tuple[Scope, str]] = Counter()
    per_day: Counter[tuple[str, str]] = Counter()
    for f in facts:
        expected[Scope.KEY, f.key_id] += f.cost
        expected[Scope.USER, f.user_id] += f.cost
        if f.team_id:
            expected[Scope.TEAM, f.team_id] += f.cost
        per_day[f.key_id, local_day(f.occurred_at, "Europe/Berlin")] += f.cost
    for (scope, scope_id), total in expected.items():
        budget = ledger.budget(scope, scope_id)
        assert (budget.total_spent, budget.period_spent) == (total, total), (scope, scope_id)
        assert isinstance(budget.total_spent, int)
    assert ledger.budget(Scope.TEAM, "") is None
    for key in owners:
        daily = ledger.budget(Scope.KEY, key).daily
        assert daily == {d: c for (k, d), c in per_day.items() if k == key}


def test_jobs_record_their_calls_and_complete_once(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    _, ledger = apps
    job = ledger.create_job("u1", "t1", "summarise-contract", {"customer": "acme"})
    calls = [metered(n, at=START, cost=100 * n, job=job.id) for n in (1, 2, 3)]
    ledger.record_usage(calls[:2], BusPosition("meterline.usage", 0, 2))
    ledger.record_usage(calls, BusPosition("meterline.usage", 0, 5))  # 1 and 2 again, and 3
    ledger.record_usage([metered(9, at=START, cost=7, job=uuid5(NAMESPACE_URL, "unknown"))],
                        BusPosition("meterline.usage", 0, 6))

    done = ledger.complete_job(job.id, JobStatus.COMPLETED, metadata={"pages": "12"})
    with pytest.raises(DomainError, match="completes once"):
        ledger.complete_job(job.id, JobStatus.FAILED, error="too late")

    reloaded = open_store()[1].job(job.id)
    assert (reloaded.calls, reloaded.cost) == (3, 600)
    assert (reloaded.prompt_tokens, reloaded.completion_tokens) == (306, 66)
    assert reloaded.status is JobStatus.COMPLETED == done.status
    assert reloaded.metadata == {"customer": "acme", "pages": "12"}
    completed = ledger.notification_log.select(start=1, limit=100, topics=["meterline.JobCompleted"])
    assert len(completed) == 1


def test_reopened_applications_rebuild_identical_state(
        apps: tuple[Registry, Ledger], open_store: OpenStore, clock: FixedClock) -> None:
    registry, ledger = apps
    seed_registry(registry)
    key, _ = issue(registry, "u1", "laptop")
    ledger.set_budget(Scope.TEAM, "t1", BudgetPolicy(limit=DOLLAR, period=Period.DAY,
                                                     mode=Mode.GRACE, grace_hours=2))
    ledger.set_budget(Scope.USER, "u1", BudgetPolicy(limit=3 * DOLLAR, mode=Mode.HARD))
    job = ledger.create_job("u1", "t1", "nightly-report", {})
    offset = 0
    for step in range(6):
        batch = [metered(10 * step + i, at=clock.now(), cost=DOLLAR // 4, key=str(key.id),
                         job=job.id if i == 0 else None) for i in range(3)]
        offset += len(batch)
        ledger.record_usage(batch, BusPosition("meterline.usage", step % 2, offset))
        clock.advance(hours=7)
    ledger.observe_budgets([Budget.id_for(Scope.TEAM, "t1"), Budget.id_for(Scope.USER, "u1")])

    new_registry, new_ledger = open_store()
    ids = [Budget.id_for(scope, scope_id) for scope, scope_id in
           ((Scope.KEY, str(key.id)), (Scope.USER, "u1"), (Scope.TEAM, "t1"))]
    for aggregate_id in [*ids, job.id]:
        rebuilt = state(new_ledger.repository.get(aggregate_id))
        assert rebuilt == state(ledger.repository.get(aggregate_id)) == fold(ledger, aggregate_id)
    assert state(new_registry.key(key.id)) == fold(registry, key.id)
    assert [new_ledger.position("meterline.usage", p) for p in (0, 1)] == [15, 18]
    team = new_ledger.budget(Scope.TEAM, "t1")
    assert (team.period_spent, team.blocked, team.crossed) == (0, False, set())  # a new day
    blocks = new_ledger.notification_log.select(start=1, limit=1000, topics=["meterline.QuotaBlocked"])
    assert Counter(n.originator_id for n in blocks) == {team.id: 2, ids[1]: 1}
    assert new_ledger.budget(Scope.USER, "u1").blocked  # 18 x $0.25 passed the $3 hard limit


def test_budget_snapshots_round_trip_through_the_store(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    _, ledger = apps
    ledger.set_budget(Scope.KEY, "k1", BudgetPolicy(limit=10 * DOLLAR, mode=Mode.GRACE))
    budget = ledger.open_budget(Scope.KEY, "k1")
    for n in range(520):
        at = START + timedelta(minutes=n)
        budget.accrue(DOLLAR // 50, 1, local_day(at, "Europe/Berlin"), at, [f"r{n}"])
    ledger.save(budget)  # passes version 500, where the ledger takes a snapshot

    snapshots = list(ledger.snapshots.get(budget.id))
    assert [s.originator_version for s in snapshots] == [500]
    _, reopened = open_store()
    assert state(reopened.repository.get(budget.id)) == state(budget) == fold(ledger, budget.id)


# ----- caching and failed commits --------------------------------------------------------------


def test_a_cached_budget_follows_what_another_ledger_wrote(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    _, ledger = apps
    _, other = open_store()
    assert ledger.repository.cache is not None
    ledger.record_usage([metered(1, at=START, cost=100)], BusPosition("meterline.usage", 0, 1))
    assert ledger.budget(Scope.KEY, "k1").total_spent == 100  # now cached in `ledger`

    other.record_usage([metered(2, at=START, cost=50)], BusPosition("meterline.usage", 1, 1))
    ledger.record_usage([metered(3, at=START, cost=25)], BusPosition("meterline.usage", 0, 2))

    for app in (ledger, other):
        assert app.budget(Scope.KEY, "k1").total_spent == 175


def test_a_batch_that_fails_to_commit_leaves_no_trace_in_the_ledger(
        apps: tuple[Registry, Ledger], open_store: OpenStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, ledger = apps
    ledger.record_usage([metered(1, at=START, cost=600)], BusPosition("meterline.usage", 0, 1))
    ledger.set_budget(Scope.KEY, "k1", BudgetPolicy(limit=1_000, mode=Mode.HARD))
    insert_events = ledger.recorder.insert_events

    def connection_lost(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(ledger.recorder, "insert_events", insert_events)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(ledger.recorder, "insert_events", connection_lost)
    batch = [metered(2, at=START, cost=300)]
    with pytest.raises(OperationalError):
        ledger.record_usage(batch, BusPosition("meterline.usage", 0, 2))
    ledger.record_usage(batch, BusPosition("meterline.usage", 0, 2))  # the worker retries it

    budget_id = Budget.id_for(Scope.KEY, "k1")
    working = ledger.open_budget(Scope.KEY, "k1")  # the copy the next batch will build on
    assert (working.total_spent, working.blocked, working.crossed) == (900, False, {80})
    assert state(working) == fold(ledger, budget_id) == state(open_store()[1].budget(Scope.KEY, "k1"))
