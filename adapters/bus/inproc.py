"""The in-process event bus: Kafka's model (topics, partitions, offsets, groups) in one process.

Without a journal directory it lives in memory: the twin of the other buses, for tests.
With one, every publish is synced before it returns (group commit: one flush per batch of
concurrent publishers) and a restart reloads everything; its consumers must then share its
process. `meterline up` uses `journal_bus` instead, on the same files, whose consumers follow
them from other processes. Records are kept as CloudEvents bytes, as on Kafka, so
consumers get fresh objects and unserialisable data fails at publish on both buses.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import orjson

from adapters.bus.cloudevents import encode
from adapters.bus.group_commit import Publish, settle, write_batch
from adapters.bus.inproc_consumer import InProcessConsumer
from adapters.bus.journal import Journal, Offsets
from adapters.bus.partition_log import PartitionLog
from domain.ports.bus import BusMessage

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # Kafka's rule; also safe as a directory name
TRIM_EVERY = 2048  # records appended between two trims of what every reader is past


class InProcessBus:
    """An EventBus inside one asyncio loop; durable when given `journal_dir`."""

    def __init__(self, partitions: int = 4, journal_dir: Path | None = None) -> None:
        if partitions < 1:
            raise ValueError(f"a topic needs at least one partition, not {partitions}")
        self.partition_count = partitions
        self._journal = Journal(Path(journal_dir), partitions) if journal_dir else None
        self._logs: dict[str, list[PartitionLog]] = {}
        self._consumers: set[InProcessConsumer] = set()
        self._appended_since_trim = 0
        self._changed: dict[str, asyncio.Event] = {}
        self._offsets: Offsets = {}
        self._offsets_lock = asyncio.Lock()
        self._pending: list[Publish] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._running = False

    async def start(self) -> None:
        if self._journal:
            loaded, self._offsets = await asyncio.to_thread(self._journal.open)
            # All of it: a group that starts now may read from the beginning, as on Kafka.
            self._logs = {topic: [PartitionLog(records) for records in partitions]
                          for topic, partitions in loaded.items()}
            self._flusher = asyncio.create_task(self._flush_forever(), name="inproc-bus-flusher")
        self._running = True

    async def stop(self) -> None:
        """Refuses new publishes, finishes the pending ones, and closes the journal."""
        self._running = False
        if self._flusher:
            self._wake.set()
            await self._flusher
            self._flusher = None
        if self._journal:
            self._journal.close()

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        """Returns once every message is appended (and fsync'ed, with a journal)."""
        if not self._running:
            raise RuntimeError("the bus is not running: call start() before publish()")
        self._log(topic)
        # An exact-size copy: orjson's result keeps its whole 8 KiB buffer for as long as it lives.
        records = [(self.partition_of(message.key), bytes(memoryview(encode(message))))
                   for message in messages]
        if not records:
            return
        if not self._journal:
            self._apply([(topic, records)])
            return
        done = asyncio.get_running_loop().create_future()
        self._pending.append((topic, records, done))
        self._wake.set()
        await done

    def consumer(self, topic: str, group: str) -> InProcessConsumer:
        """A consumer of every partition of `topic`, positioned at the group's commits on start."""
        return InProcessConsumer(self, topic, group)

    def partition_of(self, key: str) -> int:
        """The key's partition: crc32 is stable across processes, unlike the salted hash()."""
        return zlib.crc32(key.encode()) % self.partition_count

    def records(self, topic: str, partition: int) -> PartitionLog:
        """The partition's records still in memory, addressed by offset."""
        return self._log(topic)[partition]

    def attach(self, consumer: InProcessConsumer) -> None:
        self._consumers.add(consumer)

    def detach(self, consumer: InProcessConsumer) -> None:
        self._consumers.discard(consumer)

    def _trim(self, topic: str) -> None:
        """Drops what every live consumer of `topic` has read and every group has committed."""
        readers = [c.positions() for c in self._consumers if c.topic == topic and c.running]
        readers += list(self._offsets.get(topic, {}).values())
        if not readers:
            return  # nobody has said what it needs yet: keep everything
        for partition, log in enumerate(self._log(topic)):
            log.trim(min(positions.get(partition, 0) for positions in readers))

    def changed(self, topic: str) -> asyncio.Event:
        """An event that is set when `topic` next receives records."""
        self._log(topic)
        return self._changed[topic]

    def committed(self, topic: str, group: str) -> dict[int, int]:
        return dict(self._offsets.get(topic, {}).get(group, {}))

    async def commit(self, topic: str, group: str, positions: dict[int, int]) -> None:
        """Stores the group's next offsets; with a journal, durably."""
        async with self._offsets_lock:
            self._offsets.setdefault(topic, {}).setdefault(group, {}).update(positions)
            if self._journal:
                snapshot = orjson.dumps(self._offsets, option=orjson.OPT_NON_STR_KEYS)
                await asyncio.to_thread(self._journal.save_offsets, snapshot)

    def _log(self, topic: str) -> list[PartitionLog]:
        if topic not in self._logs:
            if not _TOPIC_NAME.fullmatch(topic) or topic in {".", ".."}:
                raise ValueError(f"{topic!r} is not a valid topic name "
                                 "(1-249 letters, digits, '.', '_' or '-')")
            self._logs[topic] = [PartitionLog() for _ in range(self.partition_count)]
        if topic not in self._changed:
            self._changed[topic] = asyncio.Event()
        return self._logs[topic]

    def _apply(self, batch: Sequence[tuple[str, list[tuple[int, bytes]]]]) -> None:
        for topic, records in batch:
            log = self._log(topic)
            for partition, record in records:
                log[partition].append(record)
            self._appended_since_trim += len(records)
        if self._appended_since_trim >= TRIM_EVERY:
            self._appended_since_trim = 0
            for topic in self._logs:
                self._trim(topic)
        for topic in {topic for topic, _ in batch}:
            # a fresh event per wake-up: waiters hold the old one, later waiters the new one
            changed, self._changed[topic] = self._changed[topic], asyncio.Event()
            changed.set()

    async def _flush_forever(self) -> None:
        """Group commit: everything published during one fsync goes out in the next."""
        assert self._journal is not None
        while self._running or self._pending:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                if await write_batch(batch, partial(asyncio.to_thread, self._journal.append)):
                    self._apply([(topic, records) for topic, records, _ in batch])
                    settle(batch)
