"""Coalesces concurrent publishes into one Kafka record batch per partition.

aiokafka's `send()` costs tens of microseconds of Python per record (partitioner, metadata
checks, futures), and every produce request it sends costs ~50 µs more to encode and
acknowledge: together more than the rest of the gateway's metering step. Here each
partition has a list of records waiting and at most one batch in flight, as in Nagle's
algorithm. A record that finds its partition idle leaves at once (the drain task starts
on the next turn of the loop, so records published in the same turn go with it); records
that arrive while a batch is in flight wait for its acknowledgement and then leave
together as the next batch, through `send_batch`. A lone request pays no delay, and
under load each produce request carries everything that came during one round trip.

Every publish call waits on its own future, resolved when the broker has acknowledged all
the batches holding its records (or failed with the first error). A publisher that is
cancelled cancels neither anyone else's delivery nor its own records.

Records keep Kafka's default placement: partition = murmur2(key) mod partition count,
the same as the Java client and aiokafka's DefaultPartitioner, with the hash cached per
key because the hash itself is pure Python.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

_KEY_HASH_CACHE_LIMIT = 65_536


class _Publish:
    """One publish call: its future, and how many of its records await acknowledgement."""
    __slots__ = ("future", "unacknowledged")

    def __init__(self, future: asyncio.Future[None], records: int) -> None:
        self.future = future
        self.unacknowledged = records

    def acknowledged(self) -> None:
        self.unacknowledged -= 1
        if self.unacknowledged == 0 and not self.future.done():
            self.future.set_result(None)

    def failed(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(slots=True)
class _Waiting:
    """Records for one partition, each with the publish call it came from."""
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    publishes: list[_Publish] = field(default_factory=list)


class PartitionBatcher:
    def __init__(self, producer: AIOKafkaProducer, headers: Sequence[tuple[str, bytes]]) -> None:
        self._producer = producer
        self._headers = list(headers)
        self._partitions: dict[str, list[int]] = {}
        self._key_hashes: dict[bytes, int] = {}
        self._waiting: dict[tuple[str, int], _Waiting] = {}
        self._draining: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Returns once the broker has acknowledged every (key, value) record; raises if not."""
        partitions = self._partitions.get(topic) or await self.load_partitions(topic)
        if not records:
            return
        loop = asyncio.get_running_loop()
        publish = _Publish(loop.create_future(), len(records))
        for key, value in records:
            where = (topic, partitions[self._key_hash(key) % len(partitions)])
            waiting = self._waiting.get(where)
            if waiting is None:
                waiting = self._waiting[where] = _Waiting()
            waiting.records.append((key, value))
            waiting.publishes.append(publish)
            if where not in self._draining:
                self._draining.add(where)
                task = loop.create_task(self._drain(where))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        await publish.future

    async def load_partitions(self, topic: str) -> list[int]:
        """Reads a topic's partitions from the broker's metadata (done once per topic)."""
        found = await self._producer.partitions_for(topic)
        if not found:
            raise RuntimeError(f"topic {topic} has no partitions in the broker's metadata")
        self._partitions[topic] = sorted(found)
        return self._partitions[topic]

    def _key_hash(self, key: bytes) -> int:
        found = self._key_hashes.get(key)
        if found is None:
            if len(self._key_hashes) >= _KEY_HASH_CACHE_LIMIT:
                self._key_hashes.clear()
            found = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return found

    async def _drain(self, where: tuple[str, int]) -> None:
        """Sends what waits for `where` as batches until nothing is left waiting."""
        try:
            while (waiting := self._waiting.pop(where, None)) is not None:
                deliveries = await self._send(where, waiting)
                if deliveries:  # one batch in flight per partition: what comes meanwhile waits
                    await asyncio.wait(deliveries)
        finally:
            self._draining.discard(where)

    async def _send(self, where: tuple[str, int], waiting: _Waiting) -> list[asyncio.Future]:
        """Hands the records to the producer as batches; returns their delivery futures."""
        topic, partition = where
        start = 0
        deliveries: list[asyncio.Future] = []
        try:
            while start < len(waiting.records):
                batch = self._producer.create_batch()
                end = start
                for key, value in waiting.records[start:]:
                    if batch.append(key=key, value=value, timestamp=None, headers=self._headers) is None:
                        break
                    end += 1
                if end == start:
                    raise ValueError(f"a record of {len(waiting.records[start][1])} bytes does not fit "
                                     "in one Kafka batch (raise max_batch_size)")
                delivery = await self._producer.send_batch(batch, topic, partition=partition)
                delivery.add_done_callback(_resolver(waiting.publishes[start:end]))
                deliveries.append(delivery)
                start = end
        except Exception as error:  # noqa: BLE001 - every publisher left gets the reason
            for publish in waiting.publishes[start:]:
                publish.failed(error)
        return deliveries

    async def close(self) -> None:
        """Waits for the drain tasks still running; the producer's stop() then flushes."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _resolver(publishes: list[_Publish]):
    def resolve(delivery: asyncio.Future) -> None:
        if delivery.cancelled():
            error: BaseException | None = RuntimeError("the batch's delivery was cancelled: "
                                                       "the producer stopped")
        else:
            error = delivery.exception()
        for publish in publishes:
            if error is None:
                publish.acknowledged()
            else:
                publish.failed(error)
    return resolve
