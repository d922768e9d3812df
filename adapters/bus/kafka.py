"""The event bus on any Kafka-protocol broker, via aiokafka; values are CloudEvents JSON.

At-least-once: acks="all" without the idempotent producer (the dev broker, tansu, lacks
it), so a retried send can duplicate a record; consumers dedupe by event id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from adapters.bus.cloudevents import CONTENT_TYPE, encode
from adapters.bus.kafka_batches import PartitionBatcher
from adapters.bus.kafka_consumer import REQUEST_TIMEOUT_MS, KafkaBusConsumer
from domain.ports.bus import DOMAIN_TOPIC, USAGE_TOPIC, BusMessage

DEFAULT_PARTITIONS = {USAGE_TOPIC: 8, DOMAIN_TOPIC: 4}
OTHER_TOPIC_PARTITIONS = 4  # for topics created on first use (tests, tools)
# one record batch per partition and publishing moment; aiokafka's default 16 KiB holds only
# ~20 RequestMetered (Kafka takes up to 1 MiB a batch)
MAX_BATCH_BYTES = 256 * 1024
_HEADERS = [("content-type", CONTENT_TYPE.encode())]


class KafkaBus:
    """An EventBus on a Kafka-protocol broker; creates its topics when they are missing."""

    def __init__(self, bootstrap: str, partitions: dict[str, int] | None = None,
                 client_id: str = "meterline", linger_ms: int = 0,
                 request_timeout_ms: int = REQUEST_TIMEOUT_MS) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._partitions = {**DEFAULT_PARTITIONS, **(partitions or {})}
        self._linger_ms = linger_ms
        self._request_timeout_ms = request_timeout_ms  # how soon a publish fails when the broker is gone
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._batcher: PartitionBatcher | None = None
        self._known_topics: set[str] = set()
        self._topics_lock = asyncio.Lock()

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin",
            request_timeout_ms=self._request_timeout_ms)
        await self._admin.start()
        await self.ensure_topics(list(self._partitions))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all",
            enable_idempotence=False, linger_ms=self._linger_ms, max_batch_size=MAX_BATCH_BYTES,
            request_timeout_ms=self._request_timeout_ms)
        await self._producer.start()
        self._batcher = PartitionBatcher(self._producer, _HEADERS)
        for topic in self._partitions:  # so that a publish to them queues without waiting
            await self._batcher.load_partitions(topic)

    async def stop(self) -> None:
        if self._batcher:
            await self._batcher.close()
            self._batcher = None
        if self._producer:
            await self._producer.stop()  # flushes what is still queued
            self._producer = None
        if self._admin:
            await self._admin.close()
            self._admin = None

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        """Returns once the broker has acknowledged every message (acks=all); raises if not."""
        if self._batcher is None:
            raise RuntimeError("the bus is not running: call start() before publish()")
        if topic not in self._known_topics:
            await self.ensure_topics([topic])
        await self._batcher.publish(topic, [(message.key.encode(), encode(message))
                                            for message in messages])

    def consumer(self, topic: str, group: str) -> KafkaBusConsumer:
        """A consumer of every partition of `topic` by assign(): no group join, no rebalance."""
        return KafkaBusConsumer(self, topic, group)

    async def ensure_topics(self, topics: list[str]) -> None:
        """Creates the topics the broker lacks; a topic someone else created meanwhile is fine."""
        missing = [topic for topic in topics if topic not in self._known_topics]
        if not missing:
            return
        if self._admin is None:
            raise RuntimeError("the bus is not running: call start() first")
        async with self._topics_lock:
            missing = [topic for topic in missing if topic not in self._known_topics]
            if not missing:
                return
            new = [NewTopic(topic, self._partitions.get(topic, OTHER_TOPIC_PARTITIONS), 1)
                   for topic in missing]
            response = await self._admin.create_topics(new)
            for topic, code, message in (error[:3] for error in response.topic_errors):
                error_type = for_code(code)
                if code and error_type is not TopicAlreadyExistsError:
                    raise error_type(f"cannot create topic {topic}: {message}")
            self._known_topics.update(missing)
