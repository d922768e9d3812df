"""Shared by the event store tests: a fixed clock, applications opened on the test's store, helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.domain import Aggregate

from adapters.clock import FixedClock
from adapters.eventstore.environments import open_applications
from domain.credentials import fingerprint, new_secret
from domain.principals import Role
from domain.services.ledger import Ledger
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
