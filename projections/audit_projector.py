"""The audit projector: the audit trail's entries into the audit index (ClickHouse), each once in effect.

It follows the trail's entries stream by seq (the stream's version: gapless, in the trail's
own store and notification log) and inserts them a page at a time. Its place is the index
itself (`AuditIndex.audit_position`: the unbroken run of seqs from 1), read at start, so there
is no positions file to lose or to contradict the store, and a projector on another host would
start from the same place. A page inserted twice (a kill -9 between the insert and the next
page) holds each seq once: the table is a ReplacingMergeTree by seq, read FINAL, and every
insert is one month's part, whole or absent, so a crash never leaves a later entry without an
earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from domain.audit import ChainedEntry
from domain.ports.audit_index import AuditFilter, AuditIndex, AuditIndexQuery
from domain.services.audit_trail import AuditTrail

log = logging.getLogger(__name__)
PAGE = 1000


class AuditProjector:
    """Copies `trail` into `index`; blocking (eventsourcing and the store are synchronous):
    call `run_once` from a worker thread, `run` does so itself."""

    def __init__(self, trail: AuditTrail, index: AuditIndex, page: int = PAGE, poll_s: float = 0.25,
                 retry_delay_s: float = 0.5) -> None:
        self.trail = trail
        self.index = index
        self.page = page
        self.poll_s = poll_s
        self.retry_delay_s = retry_delay_s
        self.position: int | None = None  # the last seq in the index; read from it at start
        self.inserted = 0
        self.broken_at: int | None = None  # an unreadable entry stops the projection here

    def start(self) -> None:
        """Reads where the index stands; an index that does not belong to this trail (longer
        than it, or a different entry at its last seq) is emptied and projected again."""
        position = self.index.audit_position()
        doubt = self._doubt(position)
        if doubt is not None:
            log.warning("audit projector: %s; rebuilding the audit index from the trail", doubt)
            self.index.delete_audit()
            position = 0
        self.position = position

    def _doubt(self, position: int) -> str | None:
        if position == 0:
            return None
        head = self.trail.head().seq
        if position > head:
            return f"the index holds {position} entries, the trail {head}"
        ours = next(iter(self.trail.records(after=position - 1, upto=position)), None)
        held = self.index.audit_entries(AuditIndexQuery(AuditFilter(), upto=position, limit=1))
        if isinstance(ours, ChainedEntry) and held and held[0].entry_hash != ours.entry_hash:
            return f"entry {position} in the index is not the trail's"
        return None

    def rebuild(self) -> int:
        """Empties the index and projects the whole trail again; returns the entries inserted."""
        self.index.delete_audit()
        self.position = 0
        inserted = self.inserted
        while self.run_once():
            pass
        return self.inserted - inserted

    def run_once(self) -> int:
        """Inserts the next page of entries; how many (0: caught up, or stopped at a broken entry)."""
        if self.position is None:
            self.start()
        after = self.position or 0
        page: list[ChainedEntry] = []
        for record in self.trail.records(after=after, upto=after + self.page):
            if not isinstance(record, ChainedEntry):
                # a tampered row: the index stops before it (searches then read the trail), and
                # verification names it; projecting past it would hide the gap
                if self.broken_at != after + len(page) + 1:
                    self.broken_at = after + len(page) + 1
                    log.error("audit projector: entry %d cannot be read (%s); the index stops at %d "
                              "until the trail is repaired", self.broken_at, record.reason, after + len(page))
                break
            page.append(record)
        if not page:
            return 0
        self.index.insert_audit(page)
        self.position = page[-1].seq
        self.inserted += len(page)
        return len(page)

    async def run(self, stop: asyncio.Event,
                  wait_for_news: Callable[[], Awaitable[None]] | None = None) -> None:
        """Projects until `stop` is set; caught up, waits (`poll_s` by default); a failed page is
        tried again from the index's own position after a growing pause."""
        wait = wait_for_news or (lambda: asyncio.sleep(self.poll_s))
        delay = self.retry_delay_s
        while not stop.is_set():
            try:
                inserted = await asyncio.to_thread(self.run_once)
                delay = self.retry_delay_s
            except Exception:
                log.exception("audit projector: a page failed; retrying in %.1f s", delay)
                self.position = None  # read again from the index: it knows what went in
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
                continue
            if not inserted:
                await wait()
