"""A consumer of the in-process bus: its own positions over every partition of one topic."""

from __future__ import annotations

import asyncio
from typing import Protocol

from adapters.bus.cloudevents import decode
from adapters.bus.partition_log import PartitionLog
from domain.ports.bus import Delivery


class InProcessTopics(Protocol):
    """What a consumer needs of the bus that made it (InProcessBus): its logs and offsets."""

    partition_count: int

    def records(self, topic: str, partition: int) -> PartitionLog: ...

    def attach(self, consumer: InProcessConsumer) -> None: ...

    def detach(self, consumer: InProcessConsumer) -> None: ...

    def changed(self, topic: str) -> asyncio.Event: ...

    def committed(self, topic: str, group: str) -> dict[int, int]: ...

    async def commit(self, topic: str, group: str, positions: dict[int, int]) -> None: ...


class InProcessConsumer:
    """Reads every partition of `topic`; starts at the group's committed offsets (or 0)."""

    def __init__(self, bus: InProcessTopics, topic: str, group: str) -> None:
        self._bus = bus
        self.topic = topic
        self._topic = topic
        self._group = group
        self._positions: dict[int, int] | None = None
        self._first = 0  # the partition a fetch looks at first, rotated so none starves

    async def start(self) -> None:
        self._bus.changed(self._topic)  # validates the topic name early
        await self.seek_to_committed()
        self._bus.attach(self)

    async def stop(self) -> None:
        self._bus.detach(self)
        self._positions = None

    @property
    def running(self) -> bool:
        return self._positions is not None

    def positions(self) -> dict[int, int]:
        """Where the next fetch reads, per partition (what this consumer still needs)."""
        return dict(self._positions or {})

    async def partitions(self) -> list[int]:
        return list(range(self._bus.partition_count))

    def seek(self, partition: int, offset: int) -> None:
        """The next fetch from `partition` starts at `offset`."""
        if not 0 <= partition < self._bus.partition_count:
            raise ValueError(f"{self._topic} has partitions 0-{self._bus.partition_count - 1}, "
                             f"not {partition}")
        if offset < 0:
            raise ValueError(f"an offset is zero or more, not {offset}")
        self._started()[partition] = offset

    async def seek_to_committed(self) -> None:
        """Resumes every partition from the group's committed offsets (or the beginning)."""
        committed = self._bus.committed(self._topic, self._group)
        self._positions = {p: committed.get(p, 0) for p in range(self._bus.partition_count)}

    async def seek_to_end(self) -> None:
        """Skips history: the next fetch returns only messages published from now on."""
        for partition in self._started():
            self._started()[partition] = len(self._bus.records(self._topic, partition))

    async def fetch(self, max_records: int, timeout_ms: int) -> list[Delivery]:
        """Up to `max_records` deliveries, in offset order per partition; [] on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            # taken before looking, so a publish after the look still wakes this wait
            changed = self._bus.changed(self._topic)
            deliveries = self._take(max_records)
            remaining = deadline - loop.time()
            if deliveries or remaining <= 0:
                return deliveries
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return []

    async def commit(self, positions: dict[int, int]) -> None:
        """Stores the group's next offset per partition."""
        for partition, offset in positions.items():
            if not 0 <= partition < self._bus.partition_count or offset < 0:
                raise ValueError(f"cannot commit offset {offset} for partition {partition} "
                                 f"of {self._topic}")
        await self._bus.commit(self._topic, self._group, dict(positions))

    def _take(self, max_records: int) -> list[Delivery]:
        positions = self._started()
        count = self._bus.partition_count
        order = [(self._first + i) % count for i in range(count)]
        self._first = (self._first + 1) % count
        deliveries: list[Delivery] = []
        moved: dict[int, int] = {}
        for partition in order:
            start = positions[partition]
            chunk = self._bus.records(self._topic, partition).read(start, max_records
                                                                   - len(deliveries))
            deliveries.extend(Delivery(decode(record), partition, start + i)
                              for i, record in enumerate(chunk))
            moved[partition] = start + len(chunk)
            if len(deliveries) >= max_records:
                break
        # only now: a record that fails to decode stops this consumer instead of being skipped
        positions.update(moved)
        return deliveries

    def _started(self) -> dict[int, int]:
        if self._positions is None:
            raise RuntimeError("the consumer is not running: call start() first")
        return self._positions
