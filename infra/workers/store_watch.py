"""Wakes a store follower when another process writes the SQLite event store.

Under `meterline up` the ledger and the scheduler write the store from their own processes,
and the gateway's views learn of it by reading the store's logs. Reading them costs a
thread hand-off and two queries; looking at the store's write-ahead logs costs two stat()
calls. So the watch looks every `check_s` (5 ms), reads when a file has changed (at most
every `min_gap_s`), and every `fallback_s` whatever it saw, in case two commits left the
same size and time stamp (file times move in steps of a few milliseconds).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

log = logging.getLogger(__name__)


class StoreWatch:
    def __init__(self, logs: Sequence[Path], pull: Callable[[], object], check_s: float = 0.005,
                 min_gap_s: float = 0.01, fallback_s: float = 0.1) -> None:
        self.logs = list(logs)
        self.pull = pull  # blocking: run in a worker thread
        self.check_s = check_s
        self.min_gap_s = min_gap_s
        self.fallback_s = fallback_s
        self.pulls = 0
        self._seen: tuple[tuple[int, int] | None, ...] | None = None  # as `changed` last returned

    def stamp(self) -> tuple[tuple[int, int] | None, ...]:
        stamps = []
        for path in self.logs:
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                stamps.append(None)
            else:
                stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    async def run(self, stop: asyncio.Event) -> None:
        """Pulls on every change until `stop` is set; errors are logged and retried."""
        seen, pulled_at = None, 0.0
        while not stop.is_set():
            await asyncio.sleep(self.check_s)  # not wait_for(stop.wait()): a task 200 times a second
            now = time.monotonic()
            stamp = self.stamp()
            if (stamp == seen and now - pulled_at < self.fallback_s) or now - pulled_at < self.min_gap_s:
                continue
            seen, pulled_at = stamp, now  # taken before the pull: a write during it wakes the next look
            try:
                await anyio.to_thread.run_sync(self.pull)
                self.pulls += 1
            except Exception:  # the views must outlive a transient store error
                log.exception("store watch: reading new events failed; retrying")

    async def changed(self) -> None:
        """Returns once the logs look different from when it last returned, or after `fallback_s`:
        a follower that reads after each return misses no write, even one made while it read."""
        deadline = time.monotonic() + self.fallback_s
        while (stamp := self.stamp()) == self._seen and time.monotonic() < deadline:
            await asyncio.sleep(self.check_s)
        self._seen = stamp
