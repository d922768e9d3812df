"""The registry and the ledger on real event stores: every test body runs on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from adapters.clock import FixedClock
from adapters.eventstore.environments import open_applications
from domain.budget import Budget, local_day
from domain.credentials import fingerprint, new_secret
from domain.errors import DomainError
from domain.jobs import JobStatus
from domain.keys import KeyStatus
from domain.periods import Period
from domain.principals import Role
from domain.quota_policy import BudgetPolicy, Mode, Scope
from domain.services.ledger import BusPosition, Ledger
from domain.services.registry import Registry
from domain.usage import RequestMetered, UsageSource

START = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
SERVER_SECRET = b"integration-test-server-secret"
DOLLAR = 1_000_000_000

OpenStore = Callable[[], tuple[Registry, Ledger]]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def open_store(store_env: dict[str, str], clock: FixedClock) -> Iterator[OpenStore]:
    """Opens new application instances on the test's store; all are closed afterwards."""
    opened: list[Any] = []

    def open_() -> tuple[Registry, Ledger]:
        registry, ledger = open_applications(store_env, clock, "Europe/Berlin")
        opened.extend((registry, ledger))
        return registry, ledger

    yield open_
    for app in opened:
        app.close()


@pytest.fixture
def apps(open_store: OpenStore) -> tuple[Registry, Ledger]:
    return open_store()


def state(aggregate: Aggregate) -> dict[str, Any]:
    """Everything an aggregate knows, without the events it has not saved yet."""
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def fold(app: Registry | Ledger, aggregate_id: UUID) -> dict[str, Any]:
    """The aggregate rebuilt from every one of its stored events, bypassing cache and snapshots."""
    aggregate = None
    for domain_event in app.events.get(aggregate_id):
        aggregate = domain_event.mutate(aggregate)
    assert aggregate is not None, f"no events stored for {aggregate_id}"
    return state(aggregate)


def metered(n: int, *, at: datetime, cost: int, key: str = "k1", user: str = "u1",
            team: str | None = "t1", job: UUID | None = None, status: int = 200) -> RequestMetered:
    """The n-th metered request of a test; the same n always gives the same event id."""
    return RequestMetered(
        event_id=str(uuid5(NAMESPACE_URL, f"request/{n}")), occurred_at=at, key_id=key,
        user_id=user, team_id=team, model="llama-3-8b", endpoint="/v1/chat/completions",
        prompt_tokens=100 + n, completion_tokens=20 + n, cached_tokens=0, latency_ms=40,
        status=status, usage_source=UsageSource.UPSTREAM, price_version=1, cost=cost,
        job_id=str(job) if job else None)


def issue(registry: Registry, user_id: str, name: str, **kwargs: Any) -> tuple[Any, str]:
    secret = new_secret()
    key = registry.issue_key(user_id, name, kwargs.pop("models", ["llama-3-8b"]),
                             fingerprint(secret, SERVER_SECRET), secret, **kwargs)
    return key, secret


def seed_registry(registry: Registry) -> None:
    registry.create_team("t1", "Research", cost_center="CC-100")
    registry.register_user("u1", Role.USER, team_id="t1", email="ada@example.com")
    registry.set_price("llama-3-8b", input_per_million=DOLLAR // 5, output_per_million=DOLLAR // 2)
    registry.set_price("qwen-2-7b", input_per_million=DOLLAR // 10, output_per_million=DOLLAR // 4)


# ----- registry --------------------------------------------------------------------------------


def test_registry_keeps_teams_users_and_the_key_lifecycle_across_a_reopen(
        apps: tuple[Registry, Ledger], open_store: OpenStore, clock: FixedClock) -> None:
    registry, _ = apps
    seed_registry(registry)
    registry.create_team("t1", "Research & Development", cost_center="CC-200")
    rotated, old_secret = issue(registry, "u1", "laptop", description="dev box")
    revoked, _ = issue(registry, "u1", "ci")
    expiring, _ = issue(registry, "u1", "demo", expires_at=START + timedelta(hours=1))

    new_secret_ = new_secret()
    registry.rotate_key(rotated.id, fingerprint(new_secret_, SERVER_SECRET), new_secret_,
                        grace_seconds=600)
    registry.change_key_models(rotated.id, ["llama-3-8b", "qwen-2-7b"])
    registry.revoke_key(revoked.id, reason="leaked in a log")
    clock.advance(hours=2)
    assert registry.expire_keys(registry.keys_of("u1")) == 1

    reopened, _ = open_store()
    team, user = reopened.team("t1"), reopened.user("u1")
    assert (team.name, team.cost_center) == ("Research & Development", "CC-200")
    assert (user.team_id, user.role, user.email, user.active) == ("t1", Role.USER,
                                                                  "ada@example.com", True)
    key = reopened.key(rotated.id)
    assert key.secret_hmac == fingerprint(new_secret_, SERVER_SECRET)
    assert key.previous_hmac == fingerprint(old_secret, SERVER_SECRET)
    assert key.previous_valid_until == START + timedelta(seconds=600)
    assert key.models == ["llama-3-8b", "qwen-2-7b"]
    assert reopened.key(revoked.id).status is KeyStatus.REVOKED
    assert reopened.key(expiring.id).status is KeyStatus.EXPIRED
    assert not reopened.key(expiring.id).usable_at(clock.now())
    assert {k.id for k in reopened.keys_of("u1")} == {rotated.id, revoked.id, expiring.id}
    for aggregate_id in (team.id, user.id, rotated.id, revoked.id, expiring.id):
        assert state(reopened.repository.get(aggregate_id)) == fold(registry, aggregate_id)


def test_price_versions_apply_from_their_effective_date(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    registry, _ = apps
    registry.set_price("llama-3-8b", input_per_million=200, output_per_million=400,
                       effective_from=START)
    registry.set_price("llama-3-8b", input_per_million=300, output_per_million=600,
                       effective_from=START + timedelta(days=30))
    registry.set_price("llama-3-8b", input_per_million=250, output_per_million=500,
                       effective_from=START + timedelta(days=10))
    repeated = registry.set_price("llama-3-8b", input_per_million=250, output_per_million=500,
                                  effective_from=START + timedelta(days=10))

    # Bringing the increase forward to day 20 must take effect, though its terms equal v2's.
    forward = registry.set_price("llama-3-8b", input_per_million=300, output_per_million=600,
                                 effective_from=START + timedelta(days=20))

    book = open_store()[0].price_book("llama-3-8b")
    assert (repeated.version, forward.version, len(book.prices)) == (3, 4, 4)
    assert book.price_at(START + timedelta(days=25)).version == 4
    assert book.price_at(START).version == 1
    assert book.price_at(START + timedelta(days=10) - timedelta(microseconds=1)).version == 1
    assert book.price_at(START + timedelta(days=10)).version == 3
    assert book.price_at(START + timedelta(days=45)).version == 2
    assert book.price_version(3).input_per_million == 250
    with pytest.raises(DomainError, match="no price in force"):
        book.price_at(START - timedelta(seconds=1))


def test_offboarding_revokes_every_live_key_in_one_transaction(
        apps: tuple[Registry, Ledger], open_store: OpenStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry, _ = apps
    seed_registry(registry)
    keys = [issue(registry, "u1", f"key-{i}")[0] for i in range(3)]
    registry.revoke_key(keys[2].id)

    # A concurrent writer changes one key between the load and the save: nothing may be stored.
    other, _ = open_store()
    load_keys = registry.keys_of

    def keys_then_race(user_id: str) -> list[Any]:
        loaded = load_keys(user_id)
        other.change_key_models(keys[1].id, ["qwen-2-7b"])
        return loaded

    monkeypatch.setattr(registry, "keys_of", keys_then_race)
    with pytest.raises(IntegrityError):
        registry.deactivate_user("u1", reason="left the company")
    assert other.user("u1").active
    assert [other.key(k.id).status for k in keys] == [KeyStatus.ACTIVE, KeyStatus.ACTIVE,
                                                      KeyStatus.REVOKED]

    monkeypatch.undo()
    before = registry.recorder.max_notification_id() or 0
    revoked_ids = registry.deactivate_user("u1", reason="left the company")
    recorded = registry.notification_log.select(start=before + 1, limit=10)

    assert set(revoked_ids) == {keys[0].id, keys[1].id}
    assert not other.user("u1").active
    assert all(other.key(k.id).status is KeyStatus.REVOKED for k in keys)
    assert sorted(n.topic for n in recorded) == ["meterline.KeyRevoked", "meterline.KeyRevoked",
                                                  "meterline.UserDeactivated"]
    with pytest.raises(DomainError, match="deactivated"):
        issue(other, "u1", "after offboarding")


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


# ----- consistency boundary and caching ---------------------------------------------------------


def test_two_conflicting_saves_of_one_aggregate_raise_integrity_error(
        apps: tuple[Registry, Ledger]) -> None:
    registry, ledger = apps
    seed_registry(registry)
    key, _ = issue(registry, "u1", "laptop")
    first, second = registry.key(key.id), registry.key(key.id)
    first.change_models(["qwen-2-7b"], START)
    second.revoke("lost laptop", START)
    registry.save(first)
    with pytest.raises(IntegrityError):
        registry.save(second)
    assert registry.key(key.id).status is KeyStatus.ACTIVE

    ledger.set_budget(Scope.USER, "u1", BudgetPolicy(limit=DOLLAR))
    one, two = (ledger.budget(Scope.USER, "u1") for _ in range(2))  # two copies from the store
    assert one.version == two.version
    one.accrue(5, 1, "2025-03-03", START, ["a"])
    two.set_policy(BudgetPolicy(limit=2 * DOLLAR), START)
    ledger.save(one)
    with pytest.raises(IntegrityError):
        ledger.save(two)
    assert ledger.budget(Scope.USER, "u1").policy.limit == DOLLAR


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
