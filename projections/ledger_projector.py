"""The ledger projector: the ledger's recorded facts into the analytics store, each batch exactly once.

It follows the ledger's own log (its `UsageBatchRecorded` events, by notification id), not the
bus: the ledger has already dropped the bus's duplicate copies, so every fact arrives once.
ClickHouse shares no transaction with the position, so a batch may be inserted twice (a crash
between the insert and the position); rollups fed by materialized views would count it twice
unless the second insert is a no-op. It is one when it carries the same `batch_id` and exactly
the same facts, so before inserting notifications [a, b] the projector durably writes that
intent, names the batch after (generation, a, b), and after a crash inserts [a, b] again first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from domain.ports.analytics import AnalyticsStore
from domain.services.usage_log import UsageLog
from domain.usage import RequestMetered
from projections.positions_file import Positions, Rebuild, load_positions, lock_positions, save_positions
from projections.usage_facts import checked_facts

log = logging.getLogger(__name__)
Recorded = tuple[int, Any]  # (notification id, UsageBatchRecorded event)


@dataclass(frozen=True)
class BatchResult:
    """What one batch held: the notifications [first, last], facts inserted, malformed facts skipped."""

    notifications: int
    inserted: int = 0
    malformed: int = 0
    batch_id: str | None = None


class LedgerProjector:
    """Folds the ledger's recorded batches into an AnalyticsStore; `positions_path` keeps its place.

    Blocking (eventsourcing and the store are synchronous): call `run_once` from a worker
    thread; `run` does so itself.
    """

    def __init__(self, ledger: UsageLog, store: AnalyticsStore, positions_path: Path, *,
                 max_facts: int = 20_000, page: int = 16, retry_delay_s: float = 0.5,
                 poll_s: float = 0.05) -> None:
        self.ledger = ledger
        self.store = store
        self.positions_path = Path(positions_path)
        # ClickHouse wants few large inserts (a part each); 20,000 facts insert in ~50 ms.
        self.max_facts = max_facts
        self.page = page  # notifications read per query: up to ~5,000 facts each
        self.retry_delay_s = retry_delay_s
        self.poll_s = poll_s
        self.inserted = self.malformed = 0
        self.positions = Positions()
        self._ahead: deque[Recorded] = deque()  # read past the last batch, all after its end
        # the batch being inserted: (its range, facts, malformed, notifications)
        self._pending: tuple[tuple[int, int], list[RequestMetered], int, int] | None = None
        self._lock: Any = None
        # the batch a previous process was inserting when it died: recover_batch, not insert_usage
        self._recovering: tuple[int, int] | None = None

    # ----- starting and stopping -----------------------------------------------------------

    def start(self) -> None:
        """Takes the positions (PositionsLocked if another process has them) and loads them.

        Positions the store or the ledger contradicts mean analytics cannot be trusted, and the
        projector rebuilds it: facts in the store but no positions (a lost positions file, the
        bus-fed projector of old: going on from the start would count them twice in the
        rollups), positions but an empty store (analytics deleted or restored), or positions
        past the ledger's end (another ledger)."""
        if self._lock is None:
            self._lock = lock_positions(self.positions_path)
        loaded = load_positions(self.positions_path)
        if loaded is None:
            self.positions = Positions()
            doubt = "no positions but facts in the analytics store" if self.store.count_usage() else None
        else:
            self.positions = loaded
            doubt = self._doubt(loaded)
            if loaded.intent is not None and doubt is None:
                log.info("projector: batch %s was being inserted; recovering it first",
                         self.batch_id(*loaded.intent))
                self._recovering = loaded.intent
        if doubt is not None:
            log.warning("projector: %s (%s); rebuilding analytics from the ledger", doubt,
                        self.positions_path)
            self.positions = replace(self.positions, intent=None)  # no batch of the old story
            self.begin_rebuild(None)
        elif loaded is None:
            self._save(self.positions)

    def _doubt(self, loaded: Positions) -> str | None:
        if loaded.rebuild is not None:
            return None  # under way: run_once finishes it
        if loaded.next_id - 1 > self.ledger.last_notification_id():
            return f"positions at notification {loaded.next_id}, past the end of the ledger's log"
        if loaded.next_id > 1 and loaded.intent is None and not self.store.count_usage():
            return "positions but no facts in the analytics store"
        return None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def begin_rebuild(self, since: datetime | None) -> None:
        """Starts again from the ledger's first batch under a new generation, deleting the store's
        facts from `since` on (all when None); `run_once` carries it out, resuming after a crash."""
        if self.positions.intent is not None:
            # a half-inserted batch may hold facts before `since`, which the rebuild keeps
            self.run_once()
        self._ahead.clear()
        under_way = self.positions.rebuild
        if under_way is not None and not _includes(since, under_way.since):
            # one under way deleted more, or had a reason to (a store it could not trust): redo that much
            since = under_way.since
        until = self.ledger.last_notification_id()
        self._save(Positions(generation=self.positions.generation + 1, next_id=1,
                             rebuild=Rebuild(since, until)))

    # ----- one batch -----------------------------------------------------------------------

    def batch_id(self, first: int, last: int) -> str:
        """The name a batch is inserted under: the same batch after a crash, never another's."""
        return f"ledger:g{self.positions.generation}:{first}-{last}"

    def run_once(self) -> BatchResult:
        """Inserts the next batch (the intended one first, after a crash) and saves the position."""
        rebuild = self.positions.rebuild
        if rebuild is not None and not rebuild.deleted:
            self.store.delete_since(rebuild.since)  # again after a crash: nothing new was inserted yet
            self._save(replace(self.positions, rebuild=replace(rebuild, deleted=True)))
        if self.positions.intent is not None:
            first, last = self.positions.intent
            if self._pending is not None and self._pending[0] == (first, last):
                _, facts, malformed, notifications = self._pending  # read already: no need again
            else:
                recorded = self._read(first, last)
                facts, malformed = self._facts(recorded)
                notifications = len(recorded)
        else:
            recorded = self._next()
            if not recorded:  # caught up: every notification up to a rebuild's end is in
                self._finish_rebuild()
                return BatchResult(0)
            first, last = recorded[0][0], recorded[-1][0]
            facts, malformed = self._facts(recorded)
            notifications = len(recorded)
            self._save(replace(self.positions, intent=(first, last)))
        self._pending = ((first, last), facts, malformed, notifications)
        batch_id = self.batch_id(first, last)
        if facts and self._recovering == (first, last):
            self.store.recover_batch(facts, batch_id)
        elif facts:
            self.store.insert_usage(facts, batch_id=batch_id)
        self._recovering = None
        self._pending = None
        self._save(replace(self.positions, next_id=last + 1, intent=None))
        self.inserted += len(facts)
        self.malformed += malformed
        return BatchResult(notifications, len(facts), malformed, batch_id)

    def _next(self) -> list[Recorded]:
        taken: list[Recorded] = []
        facts = 0
        while facts < self.max_facts:
            if not self._ahead:
                start = taken[-1][0] + 1 if taken else self.positions.next_id
                self._ahead.extend(self.ledger.usage_batches_from(start, self.page))
                if not self._ahead:
                    break
            if self._ahead[0][0] < self.positions.next_id:  # read before a rebuild or a restart
                self._ahead.clear()
                continue
            taken.append(self._ahead.popleft())
            facts += len(taken[-1][1].rows)
        return taken

    def _read(self, first: int, last: int) -> list[Recorded]:
        self._ahead.clear()
        recorded: list[Recorded] = []
        while page := self.ledger.usage_batches_from(recorded[-1][0] + 1 if recorded else first,
                                                     self.page, stop=last):
            recorded.extend(page)
        return recorded

    def _facts(self, recorded: list[Recorded]) -> tuple[list[RequestMetered], int]:
        rebuild = self.positions.rebuild
        facts: list[RequestMetered] = []
        malformed = 0
        for notification_id, event in recorded:
            good, problems = checked_facts(event.columns, event.rows)
            for row, reason in problems:
                # retrying cannot fix a malformed fact; the rest of its batch still goes in
                log.error("projector: skipping malformed fact %d of ledger notification %d: %s",
                          row, notification_id, reason)
            malformed += len(problems)
            if rebuild is not None and rebuild.since is not None and notification_id <= rebuild.until:
                good = [f for f in good if f.occurred_at >= rebuild.since]  # the rest was kept
            facts.extend(good)
        return facts, malformed

    def _finish_rebuild(self) -> None:
        if self.positions.rebuild is not None and self.positions.rebuild.deleted:
            self._save(replace(self.positions, rebuild=None))

    def _save(self, positions: Positions) -> None:
        save_positions(self.positions_path, positions)
        self.positions = positions

    # ----- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event,
                  wait_for_news: Callable[[], Awaitable[None]] | None = None) -> None:
        """Projects batches until `stop` is set; when caught up, waits for news (by default
        `poll_s`); a failed batch is tried again after a growing pause."""
        wait = wait_for_news or (lambda: asyncio.sleep(self.poll_s))
        delay = self.retry_delay_s
        try:
            if self._lock is None:
                await asyncio.to_thread(self.start)
            while not stop.is_set():
                try:
                    result = await asyncio.to_thread(self.run_once)
                    delay = self.retry_delay_s
                except Exception:
                    log.exception("projector: batch failed; retrying in %.1f s", delay)
                    await _sleep_unless(stop, delay)
                    delay = min(delay * 2, 30.0)
                    continue
                if not result.notifications:
                    await wait()
        finally:
            self.close()


def _includes(since: datetime | None, other: datetime | None) -> bool:
    """Whether facts from `since` on include those from `other` on."""
    return since is None or (other is not None and since <= other)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
