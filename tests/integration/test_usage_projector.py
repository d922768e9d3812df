"""The usage projector between the in-process bus and an analytics store, crashes included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.bus.inproc import InProcessBus
from domain.ports.analytics import AnalyticsStore, UsageQuery, UsageTotals
from domain.ports.bus import USAGE_TOPIC, BusConsumer, BusMessage
from domain.usage import RequestMetered, UsageSource
from gateway.v1.metering import to_message
from projections.positions_file import load_positions
from projections.usage_facts import fact_of
from projections.usage_projector import UsageProjector

T0 = datetime(2024, 5, 1, tzinfo=UTC)
MAY = UsageQuery(T0, datetime(2024, 6, 1, tzinfo=UTC))
GROUP = "meterline-projector"


def fact(i: int, **fields: Any) -> RequestMetered:
    defaults: dict[str, Any] = dict(
        event_id=str(uuid.uuid4()), occurred_at=T0 + timedelta(minutes=7 * i), key_id=f"key-{i % 5}",
        user_id=f"user-{i % 3}", team_id="red" if i % 2 else None, model="gemma-3",
        endpoint="/v1/chat/completions", prompt_tokens=100 + i, completion_tokens=i, cached_tokens=0,
        latency_ms=40, status=200, usage_source=UsageSource.UPSTREAM, price_version=1, cost=1_000_003 * i)
    return RequestMetered(**{**defaults, **fields})


def expected(facts: Sequence[RequestMetered]) -> UsageTotals:
    return UsageTotals("", len(facts), sum(f.prompt_tokens for f in facts),
                       sum(f.completion_tokens for f in facts), 0, sum(f.cost for f in facts))


class Stores:
    """Opens the analytics store, and opens it again as a restarted process would."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind, self.directory = kind, directory
        self.current: AnalyticsStore | None = None

    def open(self) -> AnalyticsStore:
        if self.kind == "memory":  # the twin has no disk: a "restart" keeps the object
            self.current = self.current or InMemoryAnalytics()
        else:
            self.close()
            self.current = ChdbAnalytics(self.directory)
        self.current.ensure_schema()
        return self.current

    def close(self) -> None:
        if isinstance(self.current, ChdbAnalytics):
            self.current.close()


@pytest.fixture(params=["memory", "chdb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    opened = Stores(request.param, tmp_path / "analytics")
    yield opened
    opened.close()


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[InProcessBus]:
    started = InProcessBus(partitions=4, journal_dir=tmp_path / "bus")
    await started.start()
    yield started
    await started.stop()


async def publish(bus: InProcessBus, facts: Sequence[RequestMetered]) -> None:
    await bus.publish(USAGE_TOPIC, [to_message(f, "gw-test") for f in facts])


def log_ends(bus: InProcessBus) -> dict[int, int]:
    """The next offset of every partition that has records."""
    return {p: end for p in range(4) if (end := len(bus.records(USAGE_TOPIC, p)))}


async def drain(projector: UsageProjector) -> int:
    """Runs batches until one comes back empty; returns how many deliveries there were."""
    total = 0
    while (result := await projector.run_once()).deliveries:
        total += result.deliveries
    return total


def projector_on(bus: InProcessBus, store: AnalyticsStore, consumer: BusConsumer | None = None,
                 **options: Any) -> UsageProjector:
    return UsageProjector(consumer or bus.consumer(USAGE_TOPIC, GROUP), store,
                          max_batch=options.pop("max_batch", 64), max_wait_ms=20, **options)


class ProcessKilled(Exception):
    pass


class DiesBeforeCommit:
    """A consumer whose process is killed after the insert and before the commit."""

    def __init__(self, inner: BusConsumer) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, positions: dict[int, int]) -> None:
        raise ProcessKilled


class FailsFirstInsert:
    """A store whose first insert fails, as a ClickHouse server that is briefly down would."""

    def __init__(self, inner: AnalyticsStore) -> None:
        self.inner, self.failures = inner, 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def insert_usage(self, facts: Sequence[RequestMetered]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("analytics store unreachable")
        self.inner.insert_usage(facts)


async def test_published_facts_are_projected_and_their_positions_committed(
        bus: InProcessBus, stores: Stores) -> None:
    facts = [fact(i) for i in range(500)]
    await publish(bus, facts)
    store = stores.open()
    projector = projector_on(bus, store)
    await projector.start()
    assert await drain(projector) == 500
    assert store.usage(MAY) == [expected(facts)]
    assert bus.committed(USAGE_TOPIC, GROUP) == log_ends(bus)


async def test_a_crash_between_insert_and_commit_counts_nothing_twice(
        tmp_path: Path, stores: Stores) -> None:
    facts = [fact(i) for i in range(300)]
    bus = InProcessBus(partitions=4, journal_dir=tmp_path / "bus")
    await bus.start()
    await publish(bus, facts)
    store = stores.open()
    doomed = projector_on(bus, store, DiesBeforeCommit(bus.consumer(USAGE_TOPIC, GROUP)), max_batch=5000)
    await doomed.start()
    with pytest.raises(ProcessKilled):
        await doomed.run_once()
    assert store.count_usage() == 300  # inserted ...
    assert bus.committed(USAGE_TOPIC, GROUP) == {}  # ... but never committed
    await bus.stop()

    # the restart: bus reloaded from its journal, store reopened from disk, a new projector
    bus = InProcessBus(partitions=4, journal_dir=tmp_path / "bus")
    await bus.start()
    store = stores.open()
    projector = projector_on(bus, store)
    await projector.start()
    assert await drain(projector) == 300  # everything redelivered ...
    assert store.count_usage() == 300  # ... and counted once
    assert store.usage(MAY) == [expected(facts)]
    assert store.usage(replace(MAY, group_by="user")) == [
        replace(expected(facts[u::3]), group=f"user-{u}") for u in range(3)]
    await bus.stop()


async def test_other_types_and_malformed_facts_are_skipped_and_the_rest_kept(
        bus: InProcessBus, stores: Stores) -> None:
    good = [fact(i) for i in range(20)]
    messages = [to_message(f, "gw-test") for f in good]
    stranger = messages[0]._replace(id=str(uuid.uuid4()), type="meterline.key.issued")
    broken = messages[1]._replace(id=str(uuid.uuid4()), data={**messages[1].data, "prompt_tokens": -5})
    truncated = messages[2]._replace(id=str(uuid.uuid4()), data={"event_id": "half"})
    await bus.publish(USAGE_TOPIC, [stranger, broken, *messages[:10], truncated, *messages[10:]])
    store = stores.open()
    projector = projector_on(bus, store, max_batch=5000)
    await projector.start()
    result = await projector.run_once()
    assert (result.deliveries, result.inserted, result.other_types, result.malformed) == (23, 20, 1, 2)
    assert store.usage(MAY) == [expected(good)]
    assert sum(bus.committed(USAGE_TOPIC, GROUP).values()) == 23


async def test_a_failed_insert_is_read_again_and_not_committed_before(bus: InProcessBus) -> None:
    facts = [fact(i) for i in range(50)]
    await publish(bus, facts)
    store = FailsFirstInsert(InMemoryAnalytics())
    projector = projector_on(bus, store, max_batch=5000)
    await projector.start()
    with pytest.raises(ConnectionError):
        await projector.run_once()
    assert bus.committed(USAGE_TOPIC, GROUP) == {}
    assert await drain(projector) == 50
    assert store.usage(MAY) == [expected(facts)]
    assert sum(bus.committed(USAGE_TOPIC, GROUP).values()) == 50


async def test_the_loop_projects_until_stopped_and_survives_a_failing_store(
        bus: InProcessBus, stores: Stores) -> None:
    facts = [fact(i) for i in range(400)]
    store = FailsFirstInsert(stores.open())
    projector = UsageProjector(bus.consumer(USAGE_TOPIC, GROUP), store, max_batch=100, max_wait_ms=20,
                               retry_delay_s=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(projector.run(stop))
    for start in range(0, 400, 50):
        await publish(bus, facts[start:start + 50])
        await asyncio.sleep(0.005)
    for _ in range(500):
        if store.count_usage() == 400 and sum(bus.committed(USAGE_TOPIC, GROUP).values()) == 400:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert store.usage(MAY) == [expected(facts)]
    assert sum(bus.committed(USAGE_TOPIC, GROUP).values()) == 400


async def test_a_positions_file_resumes_without_the_groups_commits(bus: InProcessBus, tmp_path: Path) -> None:
    facts = [fact(i) for i in range(40)]
    await publish(bus, facts)
    positions = tmp_path / "projector-positions.json"
    store = InMemoryAnalytics()
    first = projector_on(bus, store, positions_path=positions)
    await first.start()
    await drain(first)
    assert load_positions(positions) == log_ends(bus)
    await publish(bus, [fact(40)])
    # a group that never committed: only the file knows where the projector was
    second = projector_on(bus, store, bus.consumer(USAGE_TOPIC, "fresh-group"), positions_path=positions)
    await second.start()
    assert await drain(second) == 1
    assert store.count_usage() == 41


@pytest.mark.parametrize(("change", "reason"), [
    ({"occurred_at": "2024-05-01T00:00:00"}, "timezone-aware"),
    ({"prompt_tokens": -1}, "prompt_tokens"),
    ({"cost": 1.5}, "cost"),
    ({"cost": 2**63}, "cost"),
    ({"status": 70_000}, "status"),
    ({"labels": {"tier": 1}}, "labels"),
    ({"user_id": None}, "user_id"),
    ({"usage_source": "guessed"}, "RequestMetered"),
])
def test_a_fact_the_store_cannot_hold_is_named_and_explained(change: dict, reason: str) -> None:
    message: BusMessage = to_message(fact(1), "gw-test")
    assert fact_of(message) == fact(1, event_id=message.id)
    with pytest.raises(ValueError, match=reason):
        fact_of(message._replace(data={**message.data, **change}))
