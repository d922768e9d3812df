"""The ledger process: folds meterline.usage into the event store, exactly once per batch.

Each partition's batch is recorded in one transaction with its bus position (a tracking
record), and the consumer resumes from those positions, not from the broker's group
offsets. A crash anywhere inside a batch leaves either all of it or none of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

import anyio

from domain.ports.bus import USAGE_TOPIC, BusConsumer, Delivery
from domain.services.consumer_batches import fetch_batch
from domain.services.ledger import BatchResult, BusPosition, Ledger
from domain.usage import EVENT_TYPE as REQUEST_METERED
from domain.usage import RequestMetered

log = logging.getLogger(__name__)
COMMIT_EVERY_S = 1.0
LINGER_FROM = 32  # facts in a round's first fetch that mean the ledger is busy


class LedgerWorker:
    def __init__(self, consumer: BusConsumer, ledger: Ledger,
                 on_recorded: Callable[[], object] | None = None,
                 after_batch: Callable[[], None] | None = None,
                 max_batch: int = 5000, max_wait_ms: int = 50, linger_ms: int = 100) -> None:
        self.consumer = consumer
        self.ledger = ledger
        self.on_recorded = on_recorded  # blocking, run in a thread
        self.after_batch = after_batch  # quick, run on the event loop
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        # Under load each round gathers facts for linger_ms: a transaction and its SpendAccrued
        # events cost the same for 10 facts as for 500. A round that starts with fewer than
        # LINGER_FROM facts is keeping up and does not wait, so that spend reaches the other
        # gateways at once under light traffic.
        self.linger_ms = linger_ms
        self.recorded = 0
        self.duplicates = 0
        self._uncommitted: dict[int, int] = {}
        self._committed_at = 0.0
        self.skipped = 0

    async def start(self) -> None:
        """Starts consuming where the ledger's tracking records say it stopped."""
        await self.consumer.start()
        await self.start_positions()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run_once(self) -> int:
        """Records one fetched batch; returns how many deliveries it covered."""
        deliveries = await fetch_batch(self.consumer, self.max_batch, self.max_wait_ms,
                                       self.linger_ms, asyncio.sleep, LINGER_FROM)
        by_partition: dict[int, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_partition[delivery.partition].append(delivery)
        for partition, batch in sorted(by_partition.items()):
            batch.sort(key=lambda d: d.offset)
            facts = self._facts(batch)
            position = BusPosition(USAGE_TOPIC, partition, batch[-1].offset + 1)
            result: BatchResult = await anyio.to_thread.run_sync(
                self.ledger.record_usage, facts, position)
            self.recorded += result.recorded
            self.duplicates += result.duplicates
            self._uncommitted[partition] = position.next_offset
        now = time.monotonic()
        if self._uncommitted and now - self._committed_at >= COMMIT_EVERY_S:
            # Informational only (the ledger resumes from its tracking records): it shows the
            # group's lag and lets the bus forget what the ledger has recorded. At most once a
            # second: on the journalled bus each commit is a file write and two fsyncs.
            await self.consumer.commit(dict(self._uncommitted))
            self._uncommitted.clear()
            self._committed_at = now
        if deliveries and self.after_batch is not None:
            self.after_batch()
        if deliveries and self.on_recorded is not None:
            await anyio.to_thread.run_sync(self.on_recorded)
        return len(deliveries)

    def _facts(self, batch: list[Delivery]) -> list[RequestMetered]:
        facts = []
        for delivery in batch:
            message = delivery.message
            if message.type != REQUEST_METERED:
                self.skipped += 1
                continue
            try:
                facts.append(RequestMetered.from_data(message.data))
            except (KeyError, TypeError, ValueError) as exc:
                # A malformed fact cannot be billed; it is logged and passed over, never retried
                # forever (the tracking record still moves past it).
                self.skipped += 1
                log.error("ledger: skipping malformed usage event %s at %s/%d: %s", message.id,
                          USAGE_TOPIC, delivery.offset, exc)
        return facts

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("ledger: batch failed; it will be retried from the stored position")
                await asyncio.sleep(1)
                await self.start_positions()

    async def start_positions(self) -> None:
        """Re-seeks every partition to the stored positions (after a failed batch)."""
        for partition in await self.consumer.partitions():
            offset = await anyio.to_thread.run_sync(self.ledger.position, USAGE_TOPIC, partition)
            self.consumer.seek(partition, offset)
