"""The registry on every event store (in-memory, SQLite, PostgreSQL), and conflicting saves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.clock import FixedClock
from domain.credentials import fingerprint, new_secret
from domain.errors import DomainError
from domain.keys import KeyStatus
from domain.principals import Role
from domain.quota_policy import BudgetPolicy, Scope
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from tests.support.stores import (
    DOLLAR,
    SERVER_SECRET,
    START,
    OpenStore,
    fold,
    issue,
    seed_registry,
    state,
)
from tests.support.stores import apps as apps  # fixtures, used by name
from tests.support.stores import clock as clock
from tests.support.stores import open_store as open_store

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


# ----- consistency boundary --------------------------------------------------------------------


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


def test_expiring_keys_leaves_the_copies_it_was_handed_unchanged(
        apps: tuple[Registry, Ledger], clock: FixedClock) -> None:
    """The scheduler hands in the registry view's copies: only stored events may change them."""
    registry, _ = apps
    seed_registry(registry)
    key, _ = issue(registry, "u1", "demo", expires_at=START + timedelta(hours=1))
    handed = registry.key(key.id)
    clock.advance(hours=2)
    assert registry.expire_keys([handed]) == 1
    assert (handed.status, handed.version) == (KeyStatus.ACTIVE, key.version)
    assert registry.key(key.id).status is KeyStatus.EXPIRED
    assert registry.expire_keys([handed]) == 0  # already expired in the store: nothing recorded
