"""Shared by the EventBus contract suites: the bus and consumer fixtures, and message helpers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.ports.bus import BusConsumer, BusMessage, Delivery, EventBus

OpenConsumer = Callable[..., Awaitable[BusConsumer]]


def message(key: str = "key-1", seq: int = 0, **changes) -> BusMessage:
    fields = dict(
        id=str(uuid4()), type="meterline.request.metered", source="/meterline/test",
        subject=key, time=datetime.now(UTC), key=key,
        data={"key": key, "seq": seq, "tokens_in": 1200, "cost_nanos": 3_600_000},
    )
    return BusMessage(**{**fields, **changes})


async def read(consumer: BusConsumer, count: int, within_s: float = 15) -> list[Delivery]:
    """Fetches until `count` deliveries have arrived (fails after `within_s`)."""
    deliveries: list[Delivery] = []
    deadline = time.monotonic() + within_s
    while len(deliveries) < count and time.monotonic() < deadline:
        deliveries += await consumer.fetch(max_records=1000, timeout_ms=200)
    assert len(deliveries) == count, f"expected {count} deliveries, got {len(deliveries)}"
    return deliveries


def in_log_order(deliveries: list[Delivery]) -> list[Delivery]:
    return sorted(deliveries, key=lambda d: (d.partition, d.offset))


def seqs(deliveries: list[Delivery]) -> list[int]:
    return [d.message.data["seq"] for d in deliveries]


class EventBusFixtures:
    """The fixtures of the EventBus contracts; an adapter's subclass provides `make_bus`."""

    @pytest.fixture
    def make_bus(self) -> Callable[[], EventBus]:
        raise NotImplementedError

    @pytest.fixture
    async def bus(self, make_bus: Callable[[], EventBus]) -> AsyncIterator[EventBus]:
        bus = make_bus()
        await bus.start()
        yield bus
        await bus.stop()


    @pytest.fixture
    def topic(self) -> str:
        return f"contract.{uuid4().hex[:12]}"  # fresh per test: tests share the Kafka broker

    @pytest.fixture
    async def open_consumer(self, bus: EventBus, topic: str) -> AsyncIterator[OpenConsumer]:
        opened: list[BusConsumer] = []

        async def open_consumer(group: str = "group-a") -> BusConsumer:
            consumer = bus.consumer(topic, group)
            await consumer.start()
            opened.append(consumer)
            return consumer

        yield open_consumer
        for consumer in opened:
            await consumer.stop()
