"""PartitionBatcher against a scripted producer: batching, acknowledgement and every failure.

The contract tests run it on a real broker; here a fake producer decides when each batch
is acknowledged or fails, so the orderings that a broker makes rare are made certain.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import murmur2

from adapters.bus.kafka_batches import PartitionBatcher


class FakeBatch:
    def __init__(self, max_records: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.max_records = max_records

    def append(self, *, key: bytes, value: bytes, timestamp, headers) -> object | None:
        if len(self.records) >= self.max_records:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    """Hands out batches of at most `max_records`; each delivery waits for the test."""

    def __init__(self, partitions: int = 4, max_records: int = 1000) -> None:
        self.partitions = partitions
        self.max_records = max_records
        self.sent: list[tuple[int, list[bytes]]] = []  # (partition, values) per batch
        self.deliveries: list[asyncio.Future] = []
        self.refuse_with: Exception | None = None

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.max_records)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future:
        if self.refuse_with is not None:
            raise self.refuse_with
        self.sent.append((partition, [value for _, value in batch.records]))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]

    def acknowledge_all(self) -> None:
        for delivery in self.deliveries:
            if not delivery.done():
                delivery.set_result(None)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def record(key: str, n: int) -> tuple[bytes, bytes]:
    return key.encode(), f"{key}:{n}".encode()


async def test_publishes_in_one_turn_share_a_batch_and_return_on_its_acknowledgement() -> None:
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, [])
    tasks = [asyncio.create_task(batcher.publish("t", [record("k", n)])) for n in range(50)]
    await settle()
    assert [len(values) for _, values in producer.sent] == [50]
    assert not any(task.done() for task in tasks)
    producer.acknowledge_all()
    await asyncio.gather(*tasks)


async def test_what_arrives_while_a_batch_is_in_flight_waits_and_then_leaves_together() -> None:
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, [])
    first = asyncio.create_task(batcher.publish("t", [record("k", 0)]))
    await settle()
    later = [asyncio.create_task(batcher.publish("t", [record("k", n)])) for n in range(1, 30)]
    await settle()
    assert [len(values) for _, values in producer.sent] == [1]  # one in flight per partition
    producer.acknowledge_all()
    await first
    await settle()
    assert [len(values) for _, values in producer.sent] == [1, 29]
    producer.acknowledge_all()
    await asyncio.gather(*later)


async def test_records_go_to_kafkas_partition_for_their_key_in_publish_order() -> None:
    producer = FakeProducer(partitions=4)
    batcher = PartitionBatcher(producer, [])
    keys = [f"key-{n}" for n in range(12)]
    task = asyncio.create_task(batcher.publish("t", [record(key, n) for n, key in enumerate(keys)]))
    await settle()
    producer.acknowledge_all()
    await task
    for partition, values in producer.sent:
        assert all((murmur2(v.split(b":")[0]) & 0x7FFFFFFF) % 4 == partition for v in values)
        assert values == sorted(values, key=lambda v: int(v.split(b":")[1]))


async def test_a_publish_across_partitions_returns_only_when_every_batch_is_acknowledged() -> None:
    producer = FakeProducer(partitions=4)
    batcher = PartitionBatcher(producer, [])
    task = asyncio.create_task(batcher.publish("t", [record(f"key-{n}", n) for n in range(12)]))
    await settle()
    assert len(producer.sent) > 1
    for delivery in producer.deliveries[:-1]:
        delivery.set_result(None)
    await settle()
    assert not task.done()
    producer.deliveries[-1].set_result(None)
    await task


async def test_a_failed_batch_fails_every_publish_in_it_and_no_other() -> None:
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, [])
    doomed = [asyncio.create_task(batcher.publish("t", [record("k", n)])) for n in range(3)]
    await settle()
    after = asyncio.create_task(batcher.publish("t", [record("k", 99)]))
    await settle()
    producer.deliveries[0].set_exception(ConnectionError("broker gone"))
    results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    await settle()
    producer.acknowledge_all()
    await after  # the next batch is not blamed for the one before


async def test_a_refused_hand_over_fails_the_waiting_publishes_with_the_reason() -> None:
    producer = FakeProducer()
    producer.refuse_with = RuntimeError("accumulator closed")
    batcher = PartitionBatcher(producer, [])
    with pytest.raises(RuntimeError, match="accumulator closed"):
        await batcher.publish("t", [record("k", 0)])


async def test_records_beyond_one_batch_are_split_and_all_acknowledged() -> None:
    producer = FakeProducer(max_records=4)
    batcher = PartitionBatcher(producer, [])
    task = asyncio.create_task(batcher.publish("t", [record("k", n) for n in range(10)]))
    await settle()
    assert [len(values) for _, values in producer.sent] == [4, 4, 2]
    producer.acknowledge_all()
    await task


async def test_a_record_too_large_for_any_batch_is_refused_with_a_clear_error() -> None:
    producer = FakeProducer(max_records=0)
    batcher = PartitionBatcher(producer, [])
    with pytest.raises(ValueError, match="does not fit in one Kafka batch"):
        await batcher.publish("t", [record("k", 0)])


async def test_a_cancelled_publisher_does_not_take_its_record_back() -> None:
    producer = FakeProducer()
    batcher = PartitionBatcher(producer, [])
    await asyncio.gather(asyncio.create_task(batcher.publish("t", [record("k", -1)])),
                         _acknowledge_soon(producer))
    task = asyncio.create_task(batcher.publish("t", [record("k", 0)]))
    await asyncio.sleep(0)
    task.cancel()
    await settle()
    assert producer.sent[-1] == (producer.sent[-1][0], [b"k:0"])
    producer.acknowledge_all()
    await batcher.close()


async def _acknowledge_soon(producer: FakeProducer) -> None:
    await settle()
    producer.acknowledge_all()
