"""fetch_batch: one wait for a first delivery, then a linger that gathers what follows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

from adapters.bus.inproc import InProcessBus
from domain.ports.bus import BusMessage
from domain.services.consumer_batches import fetch_batch


class Naps(list):
    """A sleep that only records how long it was asked to sleep."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def message(seq: int) -> BusMessage:
    return BusMessage(id=str(uuid4()), type="t", source="/test", subject="s", time=datetime.now(UTC),
                      key=f"key-{seq % 3}", data={"seq": seq})


async def started_bus() -> tuple[InProcessBus, object]:
    bus = InProcessBus(partitions=2)
    await bus.start()
    consumer = bus.consumer("topic", "group")
    await consumer.start()
    return bus, consumer


async def test_records_published_during_the_linger_join_the_batch() -> None:
    bus, consumer = await started_bus()

    async def trickle() -> None:
        for seq in range(10):
            await bus.publish("topic", [message(seq)])
            await asyncio.sleep(0.005)

    publisher = asyncio.create_task(trickle())
    batch = await fetch_batch(consumer, 1000, wait_ms=1000, linger_ms=200, sleep=asyncio.sleep)
    await publisher
    assert sorted(d.message.data["seq"] for d in batch) == list(range(10))
    await bus.stop()


async def test_without_linger_the_first_fetch_is_the_batch() -> None:
    bus, consumer = await started_bus()
    await bus.publish("topic", [message(0)])
    naps = Naps()
    batch = await fetch_batch(consumer, 1000, wait_ms=100, linger_ms=0, sleep=naps)
    assert len(batch) == 1 and naps == []
    await bus.stop()


async def test_a_full_batch_does_not_linger_and_never_passes_max_records() -> None:
    bus, consumer = await started_bus()
    await bus.publish("topic", [message(seq) for seq in range(25)])
    naps = Naps()
    first = await fetch_batch(consumer, 10, wait_ms=100, linger_ms=500, sleep=naps)
    assert len(first) == 10 and naps == []
    rest = await fetch_batch(consumer, 100, wait_ms=100, linger_ms=500, sleep=naps)
    assert len(rest) == 15 and naps == [0.5]
    await bus.stop()


async def test_nothing_arriving_returns_empty_after_the_wait_without_lingering() -> None:
    bus, consumer = await started_bus()
    naps = Naps()
    assert await fetch_batch(consumer, 10, wait_ms=20, linger_ms=500, sleep=naps) == []
    assert naps == []
    await bus.stop()


async def test_a_consumer_that_keeps_up_does_not_linger() -> None:
    bus, consumer = await started_bus()
    naps = Naps()
    await bus.publish("topic", [message(seq) for seq in range(3)])
    assert len(await fetch_batch(consumer, 100, 100, 500, naps, linger_from=32)) == 3
    assert naps == []
    await bus.publish("topic", [message(seq) for seq in range(40)])
    assert len(await fetch_batch(consumer, 100, 100, 500, naps, linger_from=32)) == 40
    assert naps == [0.5]
    await bus.stop()
