"""The embedded default's bus across processes: one writer appends to the journal on disk,
its consumers follow the files, each in its own process if it likes.

The gateway publishes: every publish is written and fdatasync'ed before it returns (group
commit: one flush per batch of concurrent publishers), then the partitions' durable marks
move on. The ledger and the projector consume through `JournalFollower`s, which read the
files up to those marks, so neither shares the gateway's process, event loop or GIL. Nothing
is kept in memory: the files are the log (`journal.py` has their layout).

One process writes a journal at a time: the writer holds `writer.lock` (flock), which the
kernel releases when the process dies, so a restarted gateway takes over after a kill -9.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from adapters.bus.cloudevents import encode
from adapters.bus.group_commit import Publish, settle, write_batch
from adapters.bus.journal import Journal
from adapters.bus.journal_follower import JournalFollower, check_topic_name
from domain.ports.bus import BusMessage

log = logging.getLogger(__name__)
LOCK_FILE = "writer.lock"


class JournalBus:
    """An EventBus over a journal directory: publishes append durably, consumers follow the files."""

    def __init__(self, journal_dir: Path, partitions: int = 4, poll_ms: float = 5,
                 lock_wait_s: float = 30) -> None:
        if partitions < 1:
            raise ValueError(f"a topic needs at least one partition, not {partitions}")
        self.root = Path(journal_dir)
        self.partition_count = partitions
        self.poll_ms = poll_ms
        self.lock_wait_s = lock_wait_s
        self._journal: Journal | None = None
        self._lock_fd: int | None = None
        self._opening: asyncio.Task[None] | None = None
        self._pending: list[Publish] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # one thread of its own: the fsync hand-off is on every request's path under light load
        self._executor: ThreadPoolExecutor | None = None
        self._running = False
        self._topics: set[str] = set()  # names checked already

    async def start(self) -> None:
        """Consumers need nothing more; a publisher opens the journal on its first publish
        (or at once with `open_writer`)."""
        self._running = True

    async def open_writer(self) -> None:
        """Takes the writer lock and opens the journal for appending; waits `lock_wait_s` at
        most for another writer (a gateway still dying after a kill) to let go."""
        failed = self._opening is not None and self._opening.done() and (
            self._opening.cancelled() or self._opening.exception() is not None)
        if self._opening is None or failed:  # a lock that timed out is tried again on the next call
            self._opening = asyncio.ensure_future(self._open_writer())
        await asyncio.shield(self._opening)

    async def stop(self) -> None:
        """Refuses new publishes, finishes the pending ones, closes the journal and lets go of the lock."""
        self._running = False
        if self._opening is not None and not self._opening.done():
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._flusher is not None:
            self._wake.set()
            await self._flusher
            self._flusher = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        self._opening = None

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        """Returns once every message is appended and fdatasync'ed."""
        if not self._running:
            raise RuntimeError("the bus is not running: call start() before publish()")
        if topic not in self._topics:
            check_topic_name(topic)
            self._topics.add(topic)
        # An exact-size copy: orjson's result keeps its whole 8 KiB buffer for as long as it lives.
        records = [(self.partition_of(message.key), bytes(memoryview(encode(message))))
                   for message in messages]
        if not records:
            return
        done = asyncio.get_running_loop().create_future()
        self._pending.append((topic, records, done))  # queued before the first suspension point
        if self._flusher is None:
            try:
                await self.open_writer()
            except Exception as error:
                self._fail_pending(error)  # this publisher's too: it raises below
        self._wake.set()
        await done

    def consumer(self, topic: str, group: str) -> JournalFollower:
        """A follower of every partition of `topic`, positioned at the group's commits on start."""
        return JournalFollower(self.root, topic, group, self.partition_count, self.poll_ms / 1000)

    def partition_of(self, key: str) -> int:
        """The key's partition: crc32 is stable across processes, unlike the salted hash()."""
        return zlib.crc32(key.encode()) % self.partition_count

    async def _open_writer(self) -> None:
        self._lock_fd = await asyncio.to_thread(self._take_lock)
        journal = Journal(self.root, self.partition_count)
        await asyncio.to_thread(journal.open, False)
        self._journal = journal
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-append")
        self._flusher = asyncio.create_task(self._flush_forever(), name="journal-bus-flusher")

    def _take_lock(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_wait_s
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(
                        f"the journal {self.root} is being written by another process (pid {holder}): "
                        "one gateway writes a data directory's journal; stop it, or give this "
                        "process another data directory") from None
                if not warned:
                    log.warning("waiting for process %s to let go of the journal %s", holder, self.root)
                    warned = True
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _fail_pending(self, error: BaseException) -> None:
        pending, self._pending = self._pending, []
        settle(pending, error)

    async def _flush_forever(self) -> None:
        """Group commit: everything published during one fdatasync goes out in the next."""
        assert self._journal is not None
        loop = asyncio.get_running_loop()
        while self._running or self._pending:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                if await write_batch(batch, partial(loop.run_in_executor, self._executor,
                                                    self._journal.append)):
                    settle(batch)
