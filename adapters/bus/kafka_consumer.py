"""A Kafka consumer of every partition of one topic, by assign(), with group offsets.

It never joins the group (joins take 3-18 s on tansu and rebalance on every restart):
`group_id` is set only so the offset-commit and offset-fetch APIs work, which they do
without a join (generation -1), on tansu as on Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.bus.cloudevents import decode
from domain.ports.bus import Delivery


class KafkaCluster(Protocol):
    """What a consumer needs of the bus that made it (KafkaBus): where the brokers are."""

    bootstrap: str
    client_id: str

    async def ensure_topics(self, topics: Sequence[str]) -> None: ...

REQUEST_TIMEOUT_MS = 10_000  # fail in seconds, not aiokafka's default 40 s
FETCH_MAX_WAIT_MS = 100  # how long the broker holds an empty fetch: bounds delivery latency


class KafkaBusConsumer:
    """Reads every partition of `topic`; starts at the group's committed offsets (or 0)."""

    def __init__(self, bus: KafkaCluster, topic: str, group: str) -> None:
        self._bus = bus
        self._topic = topic
        self._group = group
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: list[TopicPartition] = []

    async def start(self) -> None:
        await self._bus.ensure_topics([self._topic])
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bus.bootstrap, client_id=f"{self._bus.client_id}-consumer",
            group_id=self._group, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS, request_timeout_ms=REQUEST_TIMEOUT_MS)
        await self._consumer.start()
        partitions = await self._partition_ids()
        self._assigned = [TopicPartition(self._topic, p) for p in partitions]
        self._consumer.assign(self._assigned)
        await self.seek_to_committed()

    async def stop(self) -> None:
        if self._consumer:
            await self._consumer.stop()
            self._consumer = None

    async def partitions(self) -> list[int]:
        return [tp.partition for tp in self._assigned]

    def seek(self, partition: int, offset: int) -> None:
        """The next fetch from `partition` starts at `offset`."""
        self._running().seek(TopicPartition(self._topic, partition), offset)

    async def seek_to_committed(self) -> None:
        """Resumes every partition from the group's committed offsets (or the beginning)."""
        consumer = self._running()
        # aiokafka's own seek_to_committed leaves never-committed partitions where they are
        for tp in self._assigned:
            committed = await consumer.committed(tp)
            consumer.seek(tp, committed if committed is not None else 0)

    async def seek_to_end(self) -> None:
        """Skips history: the next fetch returns only messages published from now on.

        tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1, not
        the log end, so aiokafka's seek_to_end would replay the rest of that batch. The
        record before that offset always exists, so fetch it and trust the high watermark
        of the fetch response instead; on Kafka this costs one small fetch.
        """
        consumer = self._running()
        reported = await consumer.end_offsets(self._assigned)
        probing = [tp for tp in self._assigned if reported[tp] > 0]
        for tp in probing:
            consumer.seek(tp, reported[tp] - 1)
        ends = {tp: reported[tp] for tp in self._assigned}
        deadline = asyncio.get_running_loop().time() + 10
        while probing and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(*probing, timeout_ms=500, max_records=10_000)
            for tp, records in batches.items():
                if records:
                    ends[tp] = max(records[-1].offset + 1, consumer.highwater(tp) or 0)
                    probing.remove(tp)
        for tp, end in ends.items():
            consumer.seek(tp, end)

    async def fetch(self, max_records: int, timeout_ms: int) -> list[Delivery]:
        """Up to `max_records` deliveries, in offset order per partition; [] on timeout."""
        consumer = self._running()
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        try:
            return [Delivery(decode(record.value, _text(record.key)), tp.partition, record.offset)
                    for tp, records in batches.items() for record in records]
        except ValueError as error:
            # aiokafka has moved past these records: rewind, so a bad record stops this
            # consumer (every time, loudly) instead of being skipped with its neighbours
            for tp, records in batches.items():
                consumer.seek(tp, records[0].offset)
            raise ValueError(f"{self._topic}: a record does not decode: {error}") from error

    async def commit(self, positions: dict[int, int]) -> None:
        """Stores the group's next offset per partition (the offset-commit API, no join)."""
        await self._running().commit(
            {TopicPartition(self._topic, p): offset for p, offset in positions.items()})

    async def _partition_ids(self) -> list[int]:
        consumer = self._running()
        for _ in range(50):  # a topic created a moment ago may not be in metadata yet
            await consumer.topics()
            partitions = consumer.partitions_for_topic(self._topic)
            if partitions:
                return sorted(partitions)
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {self._topic} has no partitions on {self._bus.bootstrap}")

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the consumer is not running: call start() first")
        return self._consumer


def _text(key: bytes | None) -> str | None:
    return key.decode() if key is not None else None
