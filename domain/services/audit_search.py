"""Reading the audit trail back for people: entries matching a filter, newest first, a page at a time.

A scan of the trail's own store, backwards from the head: enough for trails of up to a few
hundred thousand entries. A request scans at most `SCAN_LIMIT` entries and returns the
place it stopped, so a filter that matches nothing never reads a large trail in one go.
Searching years of entries fast is the ClickHouse projection's job (`audit_index_search.py`);
this scan covers what the projection has not reached yet, and stands in when it is away.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from domain.audit import ChainedEntry
from domain.ports.audit_index import AuditFilter
from domain.services.audit_trail import AuditTrail

PAGE = 1000
SCAN_LIMIT = 50_000


@dataclass(frozen=True)
class AuditPage:
    entries: list[ChainedEntry]
    next_before: int | None  # pass as `before` for the next page; None: nothing older is left


def newest_first(trail: AuditTrail, where: AuditFilter, before: int | None = None, limit: int = 100,
                 scan_limit: int = SCAN_LIMIT, after: int = 0) -> AuditPage:
    """Up to `limit` entries matching `where` with a seq below `before` (default: all) and above
    `after`, newest first; `next_before` is None once every entry above `after` was looked at."""
    found: list[ChainedEntry] = []
    for scanned, record in enumerate(_backwards(trail, before, after), start=1):
        if where.matches(record.entry):
            found.append(record)
            if len(found) == limit:
                return AuditPage(found, record.seq if record.seq > after + 1 else None)
        if scanned >= scan_limit:
            return AuditPage(found, record.seq if record.seq > after + 1 else None)
    return AuditPage(found, None)


def every_match(trail: AuditTrail, where: AuditFilter, scan_limit: int = SCAN_LIMIT) -> list[ChainedEntry]:
    """The matching entries among the newest `scan_limit`, oldest first."""
    return list(reversed(newest_first(trail, where, limit=scan_limit, scan_limit=scan_limit).entries))


def _backwards(trail: AuditTrail, before: int | None, after: int = 0) -> Iterator[ChainedEntry]:
    """The readable entries below seq `before` and above `after`, newest first, read a page at a
    time (an unreadable one is skipped here: verification is where it is reported)."""
    upto = trail.head().seq if before is None else min(before - 1, trail.head().seq)
    while upto > after:
        lower = max(after, upto - PAGE)
        page = [r for r in trail.records(after=lower, upto=upto) if isinstance(r, ChainedEntry)]
        yield from reversed(page)
        upto = lower
