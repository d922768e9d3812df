"""Audit search through the index (the trail projected to ClickHouse), with the trail for the rest.

The index holds the trail's entries 1..p (`AuditIndex.audit_position`); the trail's head h may be
further on, because the projector follows it a moment behind. A page is read newest first: the
entries above p from the trail itself (a short scan while the projector keeps up), then the
rest from the index. So a search answers the same entries however far behind the projection
is, and says how far (`head - position` entries, and the age of the oldest one not projected).
When the index cannot answer (the analytics store is away, or a trail broken at p + 1 stops the
projector), the whole page comes from the trail's scan (`audit_search.newest_first`), bounded
as it always was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from domain.audit import ChainedEntry
from domain.ports.audit_index import AuditFilter, AuditIndex, AuditIndexQuery
from domain.services.audit_search import SCAN_LIMIT, newest_first
from domain.services.audit_trail import AuditTrail

log = logging.getLogger(__name__)
MAX_PAGES = 20  # `every_match`: pages of 1000 through the index


@dataclass(frozen=True)
class SearchPage:
    entries: list[ChainedEntry]
    next_before: int | None  # pass as `before` for the next page; None: nothing older is left
    source: str  # "index": all from the index; "index+trail": the newest from the trail; "trail"
    head: int  # the trail's last seq
    position: int | None  # the index's last seq (None: the index did not answer)
    lag_seconds: float | None  # the age of the oldest entry not in the index (None: none)

    def projection(self) -> dict[str, object]:
        """How the page was answered, for the response."""
        return {"source": self.source, "head_seq": self.head, "indexed_seq": self.position,
                "lag_entries": None if self.position is None else self.head - self.position,
                "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3)}


def search(trail: AuditTrail, index: AuditIndex | None, where: AuditFilter, before: int | None,
           limit: int, now: datetime) -> SearchPage:
    """Up to `limit` entries matching `where` below seq `before`, newest first."""
    # the position first: the head only grows, so a position past it is another trail's index
    # (read the other way round, entries projected in between would look like one)
    position = _position(index)
    head = trail.head().seq
    if position is not None and position > head:
        position = None
    lag = _lag(trail, position, head, now)
    if index is None or position is None:
        page = newest_first(trail, where, before, limit)
        return SearchPage(page.entries, page.next_before, "trail", head, position, lag)
    top = head if before is None else min(before - 1, head)
    tail = newest_first(trail, where, top + 1, limit, SCAN_LIMIT, after=position) if top > position else None
    found = tail.entries if tail else []
    if tail is not None and (tail.next_before is not None or len(found) == limit):
        # a full page (its last entry may be the first above the position: the index has the
        # older ones), or the scan's bound
        before_next = tail.next_before or (found[-1].seq if found[-1].seq > 1 else None)
        return SearchPage(found, before_next, "index+trail", head, position, lag)
    try:
        older = index.audit_entries(AuditIndexQuery(where, before=min(top, position) + 1, upto=position,
                                                     limit=limit - len(found)))
    except Exception as exc:  # noqa: BLE001 - any failure of the store: the trail still answers
        log.warning("audit search: the index failed (%s); scanning the trail", exc)
        page = newest_first(trail, where, before, limit)
        return SearchPage(page.entries, page.next_before, "trail", head, None, lag)
    found = found + older
    full = len(found) == limit and found[-1].seq > 1
    return SearchPage(found, found[-1].seq if full else None, "index+trail" if tail else "index",
                      head, position, lag)


def every_match(trail: AuditTrail, index: AuditIndex | None, where: AuditFilter,
                now: datetime) -> list[ChainedEntry]:
    """The matching entries, oldest first: up to MAX_PAGES pages of 1000 (the offboarding view)."""
    found: list[ChainedEntry] = []
    before = None
    for _ in range(MAX_PAGES):
        page = search(trail, index, where, before, 1000, now)
        found.extend(page.entries)
        if page.next_before is None:
            break
        before = page.next_before
    return list(reversed(found))


def _position(index: AuditIndex | None) -> int | None:
    if index is None:
        return None
    try:
        return index.audit_position()
    except Exception as exc:  # noqa: BLE001 - the analytics store is away: the trail answers
        log.warning("audit search: the index's position is unknown (%s); scanning the trail", exc)
        return None


def _lag(trail: AuditTrail, position: int | None, head: int, now: datetime) -> float | None:
    """Seconds since the oldest entry the index lacks was made (by its time)."""
    after = 0 if position is None else position
    if after >= head:
        return None
    first = next(iter(trail.records(after=after, upto=after + 1)), None)
    if not isinstance(first, ChainedEntry):
        return None
    return max(0.0, (now - first.entry.time).total_seconds())
