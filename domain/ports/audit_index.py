"""The audit index port: the audit trail's entries copied into the analytics store for search.

The trail (`domain/services/audit_trail.py`) is the record: chained, signed, verified. The
index is a projection of it (`projections/audit_projector.py`) that answers "newest entries
matching a filter" without scanning the trail; it may lag the trail, and it says how far it
has got (`audit_position`). Adapters: the analytics adapters (`adapters/analytics/chdb.py`,
`adapters/analytics/clickhouse.py`, `adapters/analytics/remote.py`) and the in-memory twin
(`adapters/analytics/memory.py`); all pass `tests/contract/test_analytics_audit.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from domain.audit import AuditEntry, ChainedEntry

MAX_TERMS = 100  # actions or targets in one filter: the API takes 20; a statement stays small
MAX_PAGE = 10_000


@dataclass(frozen=True)
class AuditFilter:
    """Every given condition must hold; `actions` and `targets` match any one of theirs."""

    actions: frozenset[str] = frozenset()
    actor: str | None = None
    targets: frozenset[str] = frozenset()
    start: datetime | None = None  # included
    end: datetime | None = None  # excluded

    def matches(self, entry: AuditEntry) -> bool:
        return ((not self.actions or entry.action in self.actions)
                and (self.actor is None or entry.actor == self.actor)
                and (not self.targets or entry.target in self.targets)
                and (self.start is None or entry.time >= self.start)
                and (self.end is None or entry.time < self.end))


@dataclass(frozen=True)
class AuditIndexQuery:
    """Up to `limit` entries matching `where` with a seq in [1, `upto`] and below `before`."""

    where: AuditFilter
    before: int | None = None  # excluded; None: no bound
    upto: int | None = None  # included; None: no bound (the caller passes the index's position)
    limit: int = 100


def check_index_query(query: AuditIndexQuery) -> None:
    """Raises ValueError for a question no adapter answers, with what to change."""
    where = query.where
    for name in ("start", "end"):
        moment = getattr(where, name)
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise ValueError(f"AuditFilter.{name} {moment!r} must be timezone-aware")
    if len(where.actions) > MAX_TERMS or len(where.targets) > MAX_TERMS:
        raise ValueError(f"an audit filter names at most {MAX_TERMS} actions and {MAX_TERMS} targets")
    for name in ("before", "upto"):
        bound = getattr(query, name)
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
            raise ValueError(f"AuditIndexQuery.{name} must be a seq (an integer from 0), got {bound!r}")
    limit = query.limit
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"AuditIndexQuery.limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")


@runtime_checkable
class AuditIndex(Protocol):
    """Audit entries for search. Inserting an entry again (same seq) changes nothing."""

    def insert_audit(self, entries: Sequence[ChainedEntry]) -> None:
        """Holds the entries; an entry whose seq is held already is kept once. Entries are
        inserted in seq order, so what the index holds is always the trail's first n entries."""
        ...

    def audit_entries(self, query: AuditIndexQuery) -> list[ChainedEntry]:
        """The entries answering `query`, newest (highest seq) first, exactly as the trail has them."""
        ...

    def audit_position(self) -> int:
        """The n such that the index holds entries 1..n and none after (0: none)."""
        ...

    def delete_audit(self) -> None:
        """Forgets every entry, for a rebuild."""
        ...
