"""The ledger projector between the ledger's store and analytics, crashes and bad facts included.

Every test checks the rollup stand-in (`BatchedRollup`) as well as the raw table: a repeated
batch must come back under the same batch id with exactly the same facts, or a view would
count it twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.analytics.memory import InMemoryAnalytics
from adapters.clock import FixedClock
from adapters.eventstore.environments import open_applications
from domain.ports.analytics import UsageQuery, UsageTotals
from domain.services.ledger import Ledger
from domain.usage import RequestMetered
from projections.ledger_projector import LedgerProjector
from projections.positions_file import Positions, PositionsLocked, load_positions, save_positions
from tests.support.projector import (
    T0,
    BatchedRollup,
    DiesAfterInsert,
    FailsMidway,
    LedgerFeed,
    ProcessKilled,
    fact,
    figure_differences,
    midnight,
)

ALL_TIME = UsageQuery(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture
def ledger(store_env: dict[str, str]) -> Iterator[Ledger]:
    registry, opened = open_applications(store_env, FixedClock(datetime(2024, 6, 1, tzinfo=UTC)))
    yield opened
    opened.close()
    registry.close()


@pytest.fixture
def memory_ledger(tmp_path: Path) -> Iterator[Ledger]:
    from adapters.eventstore.environments import memory_env
    registry, opened = open_applications(memory_env(f"projector-{uuid.uuid4()}"),
                                         FixedClock(datetime(2024, 6, 1, tzinfo=UTC)))
    yield opened
    opened.close()
    registry.close()


def totals(facts: list[RequestMetered]) -> list[UsageTotals]:
    return [UsageTotals("", sum(f.requests for f in facts), sum(f.prompt_tokens for f in facts),
                        sum(f.completion_tokens for f in facts), sum(f.cached_tokens for f in facts),
                        sum(f.cost for f in facts))]


def projector(ledger: Ledger, store: Any, path: Path, **options: Any) -> LedgerProjector:
    started = LedgerProjector(ledger, store, path / "positions.json", **options)
    started.start()
    return started


def drain(projector: LedgerProjector) -> int:
    """Runs batches until one comes back empty; returns how many notifications there were."""
    total = 0
    while (result := projector.run_once()).notifications:
        total += result.notifications
    return total


def test_recorded_batches_reach_analytics_once_each_under_batch_ids_of_their_notifications(
        ledger: Ledger, tmp_path: Path) -> None:
    facts = [fact(n) for n in range(300)]
    feed = LedgerFeed(ledger)
    for start in range(0, 300, 50):
        feed.record(facts[start:start + 50])
    store = BatchedRollup(InMemoryAnalytics())
    follower = projector(ledger, store, tmp_path, max_facts=120)
    assert drain(follower) == 6
    assert store.usage(ALL_TIME) == totals(facts)
    assert (store.requests, store.cost) == (300, sum(f.cost for f in facts))
    # whole notifications, up to max_facts: 50 + 50 + 50 facts, then 50 + 50 + 50
    ids = [n for n, _ in ledger.usage_batches_from(1, 100)]
    assert [batch for batch, _ in store.inserts] == [
        f"ledger:g1:{ids[0]}-{ids[2]}", f"ledger:g1:{ids[3]}-{ids[5]}"]
    assert load_positions(tmp_path / "positions.json") == Positions(1, ids[-1] + 1)


def test_a_crash_after_the_insert_and_before_the_position_inserts_the_same_batch_again(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    feed = LedgerFeed(memory_ledger)
    facts = [fact(n) for n in range(90)]
    feed.record(facts[:30])
    feed.record(facts[30:60])
    rollup = BatchedRollup(InMemoryAnalytics())
    doomed = projector(memory_ledger, DiesAfterInsert(rollup), tmp_path)
    with pytest.raises(ProcessKilled):
        doomed.run_once()
    doomed.close()  # the process is gone, and its lock with it
    feed.record(facts[60:])  # more arrives while it is down: the repeat must not take it in

    again = projector(memory_ledger, rollup, tmp_path)
    assert again.run_once().inserted == 60
    assert rollup.inserts[0] == rollup.inserts[1]  # same batch id, same facts, same order
    assert rollup.recoveries == [rollup.inserts[0][0]]  # recovered: a view's part may have been lost
    assert drain(again) == 1
    assert rollup.recoveries == [rollup.inserts[0][0]]  # later batches are plain inserts
    assert rollup.usage(ALL_TIME) == totals(facts)
    assert (rollup.requests, rollup.cost) == (90, sum(f.cost for f in facts))


def test_a_store_failing_mid_insert_gets_the_whole_batch_again_under_its_id(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    feed = LedgerFeed(memory_ledger)
    facts = [fact(n) for n in range(80)]
    feed.record(facts[:40])
    feed.record(facts[40:])
    rollup = BatchedRollup(FailsMidway(InMemoryAnalytics(), failures=2))
    follower = projector(memory_ledger, rollup, tmp_path)
    for _ in range(2):  # in the same process: the batch it read
        with pytest.raises(ConnectionError):
            follower.run_once()
    assert follower.positions.intent is not None
    follower.close()
    restarted = projector(memory_ledger, rollup, tmp_path)  # and read again by a new process
    assert drain(restarted) == 2
    assert {batch for batch, _ in rollup.inserts} == {restarted.batch_id(*_range(memory_ledger))}
    assert len({ids for _, ids in rollup.inserts}) == 1
    assert rollup.usage(ALL_TIME) == totals(facts)
    assert (rollup.requests, rollup.cost) == (80, sum(f.cost for f in facts))


def _range(ledger: Ledger) -> tuple[int, int]:
    ids = [n for n, _ in ledger.usage_batches_from(1, 100)]
    return ids[0], ids[-1]


def test_a_crash_after_the_intent_and_before_the_insert_inserts_exactly_the_intended_batch(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    feed = LedgerFeed(memory_ledger)
    feed.record([fact(n) for n in range(10)])
    rollup = BatchedRollup(InMemoryAnalytics())

    class DiesBeforeInsert:
        def __getattr__(self, name: str) -> Any:
            return getattr(rollup, name)

        def insert_usage(self, facts: Any, batch_id: str | None = None) -> None:
            raise ProcessKilled

    doomed = projector(memory_ledger, DiesBeforeInsert(), tmp_path)
    with pytest.raises(ProcessKilled):
        doomed.run_once()
    doomed.close()
    intent = load_positions(tmp_path / "positions.json").intent
    feed.record([fact(n) for n in range(10, 20)])
    again = projector(memory_ledger, rollup, tmp_path)
    first = again.run_once()
    assert (first.batch_id, first.inserted) == (again.batch_id(*intent), 10)
    assert drain(again) == 1
    assert rollup.count_usage() == rollup.requests == 20


def test_duplicates_on_the_bus_are_dropped_by_the_ledger_and_counted_once_in_analytics(
        ledger: Ledger, tmp_path: Path) -> None:
    facts = [fact(n) for n in range(60)]
    feed = LedgerFeed(ledger)
    feed.record(facts[:40] + facts[:10])       # copies side by side
    feed.record(facts[20:60], partition=1)     # copies far apart, on another partition
    feed.record(facts[50:], partition=2)
    rollup = BatchedRollup(InMemoryAnalytics())
    drain(projector(ledger, rollup, tmp_path))
    assert rollup.usage(ALL_TIME) == totals(facts)
    assert (rollup.requests, rollup.cost) == (60, sum(f.cost for f in facts))


def test_malformed_facts_are_skipped_counted_and_the_rest_of_their_batch_kept(
        memory_ledger: Ledger, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = [fact(n) for n in range(20)]
    bad = [fact(100, prompt_tokens=-5), fact(101, status=70_000)]
    LedgerFeed(memory_ledger).record(good[:10] + bad + good[10:])
    store = InMemoryAnalytics()
    follower = projector(memory_ledger, store, tmp_path)
    result = follower.run_once()
    assert (result.inserted, result.malformed) == (20, 2)
    assert store.usage(ALL_TIME) == totals(good)
    assert follower.malformed == 2
    assert "prompt_tokens -5" in caplog.text


def test_the_loop_projects_until_stopped_and_outlives_a_failing_store(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    facts = [fact(n) for n in range(400)]
    rollup = BatchedRollup(FailsMidway(InMemoryAnalytics(), failures=1))
    follower = LedgerProjector(memory_ledger, rollup, tmp_path / "positions.json", retry_delay_s=0.01,
                               poll_s=0.005)
    feed = LedgerFeed(memory_ledger)

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(follower.run(stop))
        for start in range(0, 400, 50):
            feed.record(facts[start:start + 50])
            await asyncio.sleep(0.005)
        for _ in range(500):
            if rollup.count_usage() == 400 and follower.positions.intent is None:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(running, 5)

    asyncio.run(scenario())
    assert rollup.usage(ALL_TIME) == totals(facts)
    assert rollup.requests == 400


def test_a_second_projector_on_the_same_positions_is_refused(memory_ledger: Ledger, tmp_path: Path) -> None:
    first = projector(memory_ledger, InMemoryAnalytics(), tmp_path)
    with pytest.raises(PositionsLocked, match="stop it first"):
        projector(memory_ledger, InMemoryAnalytics(), tmp_path)
    first.close()
    projector(memory_ledger, InMemoryAnalytics(), tmp_path).close()


def test_a_store_with_facts_but_no_positions_is_rebuilt_rather_than_counted_twice(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    facts = [fact(n) for n in range(30)]
    LedgerFeed(memory_ledger).record(facts)
    rollup = BatchedRollup(InMemoryAnalytics())
    rollup.insert_usage(facts[:20], batch_id="written-by-the-old-bus-projector")
    follower = projector(memory_ledger, rollup, tmp_path)
    assert follower.positions.generation == 2
    drain(follower)
    assert rollup.usage(ALL_TIME) == totals(facts)
    assert (rollup.requests, rollup.cost) == (30, sum(f.cost for f in facts))
    assert follower.positions.rebuild is None


@pytest.mark.parametrize("lost", ["the analytics store", "the ledger"])
def test_positions_that_the_store_or_the_ledger_contradicts_bring_a_rebuild(
        memory_ledger: Ledger, tmp_path: Path, lost: str) -> None:
    facts = [fact(n) for n in range(30)]
    LedgerFeed(memory_ledger).record(facts)
    first = projector(memory_ledger, InMemoryAnalytics(), tmp_path)
    drain(first)
    first.close()
    store = InMemoryAnalytics()  # analytics deleted (or restored from before any of it)
    if lost == "the ledger":  # another, shorter ledger: the positions point past its end
        store.insert_usage(facts)
        save_positions(tmp_path / "positions.json", replace(first.positions, next_id=10_000))
    rollup = BatchedRollup(store)
    again = projector(memory_ledger, rollup, tmp_path)
    assert again.positions.generation == 2
    drain(again)
    assert rollup.usage(ALL_TIME) == totals(facts)
    assert rollup.requests == 30


def test_on_chdb_a_crash_after_each_insert_leaves_every_rollup_equal_to_the_ledger(
        memory_ledger: Ledger, tmp_path: Path) -> None:
    """The real views: each batch inserted, the process killed before its position, a new process
    on the reopened store inserting the same batch again; raw, hourly and daily agree."""
    from adapters.analytics.chdb import ChdbAnalytics
    chdb_dir = tmp_path / "analytics"
    facts = [fact(n) for n in range(400)]
    feed = LedgerFeed(memory_ledger)
    for start in range(0, 400, 40):
        feed.record(facts[start:start + 40])
    kills, done = 0, False
    while not done:
        assert kills < 10, "the projector makes no progress across restarts"
        store = ChdbAnalytics(chdb_dir)
        # each process dies right after its second plain insert; the batch it restarted with
        # goes in through recover_batch, which this wrapper does not count
        follower = projector(memory_ledger, DiesAfterInsert(store, after=2), tmp_path, max_facts=100)
        try:
            done = not drain(follower)
        except ProcessKilled:
            kills += 1
        finally:
            follower.close()
            store.close()
    assert kills == 2  # 10 notifications of 40 facts: batches of 3 (120 facts), 3, 3 and 1
    store = ChdbAnalytics(chdb_dir)
    try:
        assert store.usage(ALL_TIME) == totals(facts)
        assert figure_differences(store, facts, midnight(T0), midnight(T0, 40)) == []
    finally:
        store.close()
