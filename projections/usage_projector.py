"""The usage projector: RequestMetered facts from `meterline.usage` into the analytics store.

ClickHouse shares no transaction with the bus offsets, so nothing here is atomic.
Correctness comes from the order and from idempotence instead: a batch is inserted
first and its positions committed after; a crash in between redelivers the batch, and
the store counts each event id once however often it is inserted. Delivery is
at-least-once, the effect exactly-once, as long as inserts stay idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from domain.ports.analytics import AnalyticsStore
from domain.ports.bus import BusConsumer, Delivery
from domain.services.consumer_batches import fetch_batch
from domain.usage import EVENT_TYPE as REQUEST_METERED
from domain.usage import RequestMetered
from projections.positions_file import load_positions, save_positions
from projections.usage_facts import fact_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    """What one batch held: facts inserted, messages of other types, malformed facts skipped."""

    deliveries: int
    inserted: int
    other_types: int
    malformed: int


class UsageProjector:
    """Folds `meterline.usage` into an AnalyticsStore in batches; `positions_path` also keeps offsets."""

    def __init__(self, consumer: BusConsumer, store: AnalyticsStore, positions_path: Path | None = None,
                 *, max_batch: int = 5000, max_wait_ms: int = 200, retry_delay_s: float = 0.5) -> None:
        self.consumer = consumer
        self.store = store
        # for consumers with no group to commit to (e.g. Kafka partitions taken with assign())
        self.positions_path = positions_path
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.retry_delay_s = retry_delay_s
        self.inserted = self.other_types = self.malformed = 0
        self._positions: dict[int, int] = {}  # next offset per partition, as last committed
        self._uncommitted: dict[int, int] = {}
        self._started = False

    async def start(self) -> None:
        """Resumes from the positions file if there is one, else from the group's commits."""
        await self.consumer.start()
        await self.consumer.seek_to_committed()
        if self.positions_path is not None:
            self._positions = await asyncio.to_thread(load_positions, self.positions_path)
            for partition, offset in self._positions.items():
                self.consumer.seek(partition, offset)
        self._started = True

    async def stop(self) -> None:
        self._started = False
        await self.consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Projects batches until `stop` is set; a failed batch is re-read after a pause."""
        if not self._started:
            await self.start()
        delay = self.retry_delay_s
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                    delay = self.retry_delay_s
                except Exception:
                    log.exception("projector: batch failed; retrying in %.1f s", delay)
                    await _sleep_unless(stop, delay)
                    delay = min(delay * 2, 30.0)
        finally:
            await self.stop()

    async def run_once(self) -> BatchResult:
        """Fetches one batch, inserts its facts, then commits its positions."""
        deliveries = await self._fetch_batch()
        if not deliveries:
            if self._uncommitted:  # a commit that failed earlier, with nothing new to carry it
                await self._commit()
            return BatchResult(0, 0, 0, 0)
        facts, other_types, malformed = self._facts(deliveries)
        try:
            await asyncio.to_thread(self.store.insert_usage, facts)
        except BaseException:
            self._rewind(deliveries)  # so the next fetch reads this batch again
            raise
        self.inserted += len(facts)
        self.other_types += other_types
        self.malformed += malformed
        for delivery in deliveries:
            self._uncommitted[delivery.partition] = max(
                self._uncommitted.get(delivery.partition, 0), delivery.offset + 1)
        await self._commit()
        return BatchResult(len(deliveries), len(facts), other_types, malformed)

    async def _fetch_batch(self) -> list[Delivery]:
        # ClickHouse wants few large inserts (a part each), not many small.
        return await fetch_batch(self.consumer, self.max_batch, self.max_wait_ms, self.max_wait_ms,
                                 asyncio.sleep)

    def _facts(self, deliveries: list[Delivery]) -> tuple[list[RequestMetered], int, int]:
        facts: list[RequestMetered] = []
        other_types = malformed = 0
        for delivery in deliveries:
            message = delivery.message
            if message.type != REQUEST_METERED:
                other_types += 1
                continue
            try:
                facts.append(fact_of(message))
            except ValueError as error:
                # retrying cannot fix a malformed fact; the rest of the batch still goes in
                malformed += 1
                log.error("projector: skipping malformed usage event %s at partition %d offset %d: %s",
                          message.id, delivery.partition, delivery.offset, error)
        return facts, other_types, malformed

    def _rewind(self, deliveries: list[Delivery]) -> None:
        first: dict[int, int] = {}
        for delivery in deliveries:
            first[delivery.partition] = min(first.get(delivery.partition, delivery.offset), delivery.offset)
        for partition, offset in first.items():
            self.consumer.seek(partition, offset)

    async def _commit(self) -> None:
        # Partitions whose commit failed earlier stay in _uncommitted and go with the next one.
        positions = dict(self._uncommitted)
        await self.consumer.commit(positions)
        if self.positions_path is not None:
            await asyncio.to_thread(save_positions, self.positions_path, {**self._positions, **positions})
        self._positions.update(positions)
        for partition, offset in positions.items():
            if self._uncommitted.get(partition) == offset:
                del self._uncommitted[partition]


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
