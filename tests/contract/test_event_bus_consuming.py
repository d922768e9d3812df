"""The EventBus contract for consumers (fetch, commit, seek) on every bus, and the journal across restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.bus.inproc import InProcessBus
from adapters.bus.journal_bus import JournalBus
from adapters.bus.kafka import KafkaBus
from domain.ports.bus import EventBus
from tests.support.buses import EventBusFixtures, OpenConsumer, in_log_order, message, read, seqs


class EventBusConsumingContract(EventBusFixtures):
    """What every EventBus adapter promises its consumers: fetch, commit and seek."""

    async def test_a_consumer_that_did_not_commit_sees_the_messages_again_after_restart(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        sent = [message("key-1", s) for s in range(5)]
        await bus.publish(topic, sent)
        first = await open_consumer()
        await read(first, 5)
        await first.stop()
        again = await read(await open_consumer(), 5)
        assert [d.message.id for d in again] == [m.id for m in sent]

    async def test_a_consumer_resumes_from_its_committed_position(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        await bus.publish(topic, [message("key-1", s) for s in range(10)])
        first = await open_consumer()
        handled = (await read(first, 10))[:4]
        await first.commit({handled[-1].partition: handled[-1].offset + 1})
        await first.stop()
        assert seqs(await read(await open_consumer(), 6)) == list(range(4, 10))
        assert seqs(await read(await open_consumer("group-b"), 10)) == list(range(10))

    async def test_seek_moves_the_next_fetch_to_the_given_offset(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        await bus.publish(topic, [message("key-1", s) for s in range(10)])
        consumer = await open_consumer()
        partition = (await read(consumer, 10))[0].partition
        consumer.seek(partition, 6)
        tail = await read(consumer, 4)
        assert [(d.offset, d.message.data["seq"]) for d in tail] == [(n, n) for n in range(6, 10)]
        consumer.seek(partition, 2)
        assert seqs(await read(consumer, 8)) == list(range(2, 10))

    async def test_seek_to_end_skips_history(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        # one publish per key: a multi-record batch is where a broker's end offset can lie
        await bus.publish(topic, [message(f"key-{k}", s) for k in range(6) for s in range(5)])
        consumer = await open_consumer()
        await consumer.seek_to_end()
        assert await consumer.fetch(max_records=100, timeout_ms=300) == []
        fresh = [message(f"key-{k}", 100 + k) for k in range(6)]
        await bus.publish(topic, fresh)
        assert sorted(seqs(await read(consumer, 6))) == list(range(100, 106))
        assert await consumer.fetch(max_records=100, timeout_ms=300) == []

    async def test_a_fetch_with_nothing_to_deliver_returns_empty_after_its_timeout(
            self, open_consumer: OpenConsumer) -> None:
        consumer = await open_consumer()
        started = time.monotonic()
        assert await consumer.fetch(max_records=10, timeout_ms=300) == []
        assert 0.25 <= time.monotonic() - started < 3

    async def test_a_waiting_fetch_wakes_up_when_a_message_arrives(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        consumer = await open_consumer()
        waiting = asyncio.create_task(consumer.fetch(max_records=10, timeout_ms=5000))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await bus.publish(topic, [message()])
        assert len(await waiting) == 1
        assert time.monotonic() - started < 1

    async def test_a_fetch_returns_at_most_max_records(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        await bus.publish(topic, [message(f"key-{n % 5}", n) for n in range(50)])
        consumer = await open_consumer()
        batches = [await consumer.fetch(max_records=7, timeout_ms=500) for _ in range(3)]
        assert all(len(batch) <= 7 for batch in batches) and any(batches)


class TestInMemoryBus(EventBusConsumingContract):
    @pytest.fixture
    def make_bus(self) -> Callable[[], EventBus]:
        return lambda: InProcessBus(partitions=4)


class TestJournalledBus(EventBusConsumingContract):
    @pytest.fixture
    def make_bus(self, tmp_path: Path) -> Callable[[], InProcessBus]:
        return lambda: InProcessBus(partitions=4, journal_dir=tmp_path / "bus")


    async def test_a_restarted_bus_has_every_message_and_committed_position(
            self, make_bus: Callable[[], InProcessBus], topic: str) -> None:
        before = make_bus()
        await before.start()
        await asyncio.gather(*(before.publish(topic, [message(f"key-{n % 7}", n)])
                               for n in range(500)))
        consumer = before.consumer(topic, "group-a")
        await consumer.start()
        first = await read(consumer, 500)
        await consumer.commit({p: 1 for p in range(4)})
        await before.stop()

        after = make_bus()
        await after.start()
        fresh = after.consumer(topic, "group-b")
        await fresh.start()
        assert in_log_order(await read(fresh, 500)) == in_log_order(first)
        resumed = after.consumer(topic, "group-a")
        await resumed.start()
        assert {(d.partition, d.offset) for d in await read(resumed, 496)} == {
            (d.partition, d.offset) for d in first if d.offset >= 1}
        await after.stop()

    async def test_a_torn_trailing_record_is_dropped_on_restart(
            self, make_bus: Callable[[], InProcessBus], tmp_path: Path, topic: str) -> None:
        bus = make_bus()
        await bus.start()
        sent = [message("key-1", s) for s in range(20)]
        await bus.publish(topic, sent)
        partition = bus.partition_of("key-1")
        await bus.stop()
        journal = tmp_path / "bus" / "topics" / topic / f"{partition}.jsonl"
        with journal.open("ab") as file:  # what a crash halfway through a write leaves
            file.write(b'{"specversion":"1.0","id":"torn-rec')

        for restart in range(2):  # the second restart proves the repair was written back
            bus = make_bus()
            await bus.start()
            consumer = bus.consumer(topic, f"group-{restart}")
            await consumer.start()
            received = await read(consumer, 20 + restart)
            assert [d.message.id for d in received[:20]] == [m.id for m in sent]
            assert await consumer.fetch(max_records=10, timeout_ms=100) == []
            if restart == 0:
                await bus.publish(topic, [message("key-1", 20)])
            await bus.stop()
        assert journal.read_bytes().count(b"\n") == 21

    async def test_publish_returns_after_the_record_is_in_the_journal(
            self, bus: InProcessBus, tmp_path: Path, topic: str) -> None:
        sent = message("key-1")
        await bus.publish(topic, [sent])
        journal = tmp_path / "bus" / "topics" / topic / f"{bus.partition_of('key-1')}.jsonl"
        assert sent.id.encode() in journal.read_bytes()

    async def test_a_journal_refuses_another_partition_count(self, tmp_path: Path) -> None:
        first = InProcessBus(partitions=4, journal_dir=tmp_path)
        await first.start()
        await first.stop()
        with pytest.raises(ValueError, match="written with 4 partitions"):
            await InProcessBus(partitions=8, journal_dir=tmp_path).start()


class TestJournalBus(EventBusConsumingContract):
    @pytest.fixture
    def make_bus(self, tmp_path: Path) -> Callable[[], EventBus]:
        return lambda: JournalBus(tmp_path / "bus", partitions=4)


@pytest.mark.kafka
class TestKafkaBus(EventBusConsumingContract):
    @pytest.fixture
    def make_bus(self, tansu_bootstrap: str) -> Callable[[], EventBus]:
        return lambda: KafkaBus(tansu_bootstrap, client_id="contract")
