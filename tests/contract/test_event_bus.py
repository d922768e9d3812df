"""The EventBus contract for publishers, run on the in-memory, journalled and Kafka buses."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from adapters.bus.inproc import InProcessBus
from adapters.bus.journal_bus import JournalBus
from adapters.bus.kafka import OTHER_TOPIC_PARTITIONS, KafkaBus
from domain.ports.bus import BusMessage, Delivery, EventBus
from tests.support.buses import EventBusFixtures, OpenConsumer, in_log_order, message, read, seqs


class EventBusPublishingContract(EventBusFixtures):
    """What every EventBus adapter promises publishers; a subclass provides `make_bus` and `inject_raw`."""

    @pytest.fixture
    def inject_raw(self, bus: EventBus) -> Callable[[str, str, bytes], Awaitable[None]]:
        """Puts raw bytes on a topic, under a key, bypassing the encoder."""
        raise NotImplementedError

    async def test_a_published_message_arrives_with_every_field_intact(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        sent = message(
            key="key-ünï", subject="team/research", schema_version=3,
            extensions={"traceparent": "00-4bf92f3577b34da6-00f067aa0ba902b7-01"},
            data={"cost_nanos": 2**62, "latency_s": 0.125, "cached": False, "job": None,
                  "models": ["gemma-3", "llama"], "nested": {"emoji": "💸", "n": -1}},
        )
        await bus.publish(topic, [sent])
        [delivery] = await read(await open_consumer(), 1)
        assert delivery.message == sent
        assert delivery.offset == 0

    async def test_messages_with_the_same_key_arrive_in_publish_order(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        async def publish_keys(keys: list[str]) -> None:
            for start in range(0, 25, 5):  # several publishes per key, interleaved across keys
                await bus.publish(topic, [message(k, s) for s in range(start, start + 5)
                                          for k in keys])

        keys = [f"key-{n}" for n in range(40)]
        await asyncio.gather(*(publish_keys(keys[n::4]) for n in range(4)))
        by_key: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in await read(await open_consumer(), 1000):
            by_key[delivery.message.key].append(delivery)
        assert {k: seqs(ds) for k, ds in by_key.items()} == {k: list(range(25)) for k in keys}
        assert all(len({d.partition for d in ds}) == 1 for ds in by_key.values())
        assert len({ds[0].partition for ds in by_key.values()}) > 1, "keys should spread"

    async def test_concurrent_publishers_lose_nothing(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        async def publisher(n: int) -> list[BusMessage]:
            sent = []
            for batch in range(40):
                messages = [message(f"key-{n}-{batch % 3}", batch * 10 + i)
                            for i in range(1 + batch % 5)]
                await bus.publish(topic, messages)
                sent += messages
            return sent

        sent = [m for batch in await asyncio.gather(*(publisher(n) for n in range(32)))
                for m in batch]
        received = await read(await open_consumer(), len(sent))
        assert sorted(d.message.id for d in received) == sorted(m.id for m in sent)

    async def test_a_cancelled_publisher_neither_loses_its_record_nor_anyone_elses(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        await bus.publish(topic, [message("key-1", -1)])  # the topic exists: publish queues at once
        sent = [message("key-1", n) for n in range(20)]
        publishes = [asyncio.ensure_future(bus.publish(topic, [m])) for m in sent]
        await asyncio.sleep(0)
        for task in publishes[::2]:
            task.cancel()
        results = await asyncio.gather(*publishes, return_exceptions=True)
        assert all(r is None for r in results[1::2])
        assert seqs(in_log_order(await read(await open_consumer(), 21))) == list(range(-1, 20))

    async def test_a_record_that_does_not_decode_stops_the_consumer_instead_of_being_skipped(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer,
            inject_raw: Callable[[str, str, bytes], Awaitable[None]]) -> None:
        await bus.publish(topic, [message("key-1", 0)])
        await inject_raw(topic, "key-1", b'{"specversion": "1.0", "id": "half')
        await bus.publish(topic, [message("key-1", 2)])
        consumer = await open_consumer()
        delivered: list[Delivery] = []
        with pytest.raises(ValueError, match="invalid JSON"):
            for _ in range(20):
                delivered += await consumer.fetch(max_records=100, timeout_ms=200)
        assert seqs(delivered) in ([], [0])
        with pytest.raises(ValueError, match="invalid JSON"):  # again: nothing was skipped
            for _ in range(20):
                await consumer.fetch(max_records=100, timeout_ms=200)

    async def test_data_that_is_not_json_is_refused_at_publish(
            self, bus: EventBus, topic: str) -> None:
        with pytest.raises(ValueError, match="not JSON-serialisable"):
            await bus.publish(topic, [message(data={"tags": {"a", "b"}})])


def append_raw(bus: InProcessBus) -> Callable[[str, str, bytes], Awaitable[None]]:
    async def inject(topic: str, key: str, raw: bytes) -> None:
        bus.records(topic, bus.partition_of(key)).append(raw)

    return inject


class TestInMemoryBus(EventBusPublishingContract):
    @pytest.fixture
    def make_bus(self) -> Callable[[], EventBus]:
        return lambda: InProcessBus(partitions=4)

    @pytest.fixture
    def inject_raw(self, bus: InProcessBus) -> Callable[[str, str, bytes], Awaitable[None]]:
        return append_raw(bus)


class TestJournalledBus(EventBusPublishingContract):
    @pytest.fixture
    def make_bus(self, tmp_path: Path) -> Callable[[], InProcessBus]:
        return lambda: InProcessBus(partitions=4, journal_dir=tmp_path / "bus")

    @pytest.fixture
    def inject_raw(self, bus: InProcessBus) -> Callable[[str, str, bytes], Awaitable[None]]:
        return append_raw(bus)


class TestJournalBus(EventBusPublishingContract):
    """The embedded default across processes: consumers follow the files (a JournalFollower)."""

    @pytest.fixture
    def make_bus(self, tmp_path: Path) -> Callable[[], JournalBus]:
        return lambda: JournalBus(tmp_path / "bus", partitions=4)

    @pytest.fixture
    def inject_raw(self, bus: JournalBus) -> Callable[[str, str, bytes], Awaitable[None]]:
        async def inject(topic: str, key: str, raw: bytes) -> None:
            await bus.open_writer()
            await asyncio.to_thread(bus._journal.append, [(topic, bus.partition_of(key), raw)])

        return inject


@pytest.mark.kafka
class TestKafkaBus(EventBusPublishingContract):
    @pytest.fixture
    def make_bus(self, tansu_bootstrap: str) -> Callable[[], EventBus]:
        return lambda: KafkaBus(tansu_bootstrap, client_id="contract")

    @pytest.fixture
    async def inject_raw(self, tansu_bootstrap: str
                         ) -> AsyncIterator[Callable[[str, str, bytes], Awaitable[None]]]:
        producer = AIOKafkaProducer(bootstrap_servers=tansu_bootstrap, acks="all",
                                    enable_idempotence=False)
        await producer.start()

        async def inject(topic: str, key: str, raw: bytes) -> None:
            await producer.send_and_wait(topic, value=raw, key=key.encode())

        yield inject
        await producer.stop()

    async def test_concurrent_publishes_share_produce_batches_and_a_lone_one_waits_for_none(
            self, bus: KafkaBus, topic: str, open_consumer: OpenConsumer,
            monkeypatch: pytest.MonkeyPatch) -> None:
        await bus.publish(topic, [message("key-1", -1)])  # the topic and its partitions are known
        producer = bus._producer
        batches: list[int] = []
        real_send_batch = producer.send_batch

        async def counting_send_batch(batch, topic_name, *, partition):
            batches.append(batch.record_count())
            return await real_send_batch(batch, topic_name, partition=partition)

        monkeypatch.setattr(producer, "send_batch", counting_send_batch)
        await asyncio.gather(*(bus.publish(topic, [message("key-1", n)]) for n in range(200)))
        assert sum(batches) == 200
        assert len(batches) <= 20, f"200 concurrent publishes went out in {len(batches)} batches"
        batches.clear()
        started = time.monotonic()
        await bus.publish(topic, [message("key-1", 200)])
        assert batches == [1] and time.monotonic() - started < 1
        assert len(await read(await open_consumer(), 202)) == 202

    async def test_records_land_where_kafkas_default_partitioner_puts_them(
            self, bus: EventBus, topic: str, open_consumer: OpenConsumer) -> None:
        keys = [f"key-{n}" for n in range(30)]
        await asyncio.gather(*(bus.publish(topic, [message(key)]) for key in keys))
        deliveries = await read(await open_consumer(), 30)
        every = list(range(OTHER_TOPIC_PARTITIONS))
        assert all(d.partition == DefaultPartitioner()(d.message.key.encode(), every, every)
                   for d in deliveries)
        assert len({d.partition for d in deliveries}) > 1


@pytest.mark.kafka
async def test_kafka_publishes_fail_within_the_request_timeout_once_the_broker_is_gone() -> None:
    from testkit.tansu import running_tansu
    topic = f"contract.{uuid4().hex[:12]}"
    with running_tansu() as bootstrap:
        bus = KafkaBus(bootstrap, client_id="contract-gone", request_timeout_ms=2000)
        await bus.start()
        await bus.publish(topic, [message("key-1", 0)])
    started = time.monotonic()
    results = await asyncio.gather(*(bus.publish(topic, [message("key-1", n)]) for n in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(result, Exception) for result in results), results
    assert time.monotonic() - started < 15, "a publish waited far past its request timeout"
    await asyncio.wait_for(bus.stop(), 30)
