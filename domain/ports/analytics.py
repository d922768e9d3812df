"""The analytics port: usage facts for dashboards and reports, queried in one SQL dialect.

Adapters: `adapters/analytics/chdb.py` (embedded), `adapters/analytics/clickhouse.py`
(server), `adapters/analytics/remote.py` (another process's store) and the in-memory twin
`adapters/analytics/memory.py`; all pass `tests/contract/test_analytics_store.py` and
`tests/contract/test_analytics_store_queries.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.usage import RequestMetered
from domain.usage_figures import AnalyticsQuery, Figures


@dataclass(frozen=True)
class UsageQuery:
    """A usage question over the half-open interval [start, end), optionally grouped."""

    start: datetime
    end: datetime
    user_id: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    group_by: str | None = None  # None | "day" | "model" | "key" | "user" | "team" | "application"
    timezone: str = "UTC"        # the zone whose calendar days "day" groups by


@dataclass(frozen=True)
class UsageTotals:
    group: str  # the group's value ("" when ungrouped); a day as YYYY-MM-DD
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: int  # nano-units


@dataclass(frozen=True)
class RecentRequest:
    """One request as a user's "last requests" list shows it: never its content.

    A request metered in parts (facts sharing a `request_id`) is one entry: tokens and cost
    summed over its parts; time, model, key, latency, status and application its latest part's.
    """

    request_id: str  # the facts' request_id, or the fact's own event id for a one-fact request
    occurred_at: datetime  # when its latest part was metered
    model: str
    key_id: str
    prompt_tokens: int
    completion_tokens: int
    cost: int  # nano-units
    latency_ms: int
    status: int
    application: str  # the `app` label, "" when untagged


class AnalyticsStore(Protocol):
    """Usage facts for analytics. Inserts are idempotent: a fact counts once per event id."""

    def ensure_schema(self) -> None:
        """Opens the store and applies the schema migrations it lacks (also done on first use)."""
        ...

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        """Inserts facts; each counts once per event id in every table. A `batch_id` names the
        batch: inserting the same batch id with the same facts again, whole or after a crash
        half-way, changes nothing, rollups included. Without one, only the raw table is safe
        to repeat; rollups would count a repeated fact again."""
        ...

    def recover_batch(self, facts: Sequence[RequestMetered], batch_id: str) -> None:
        """Inserts a batch whose insert a crash may have cut short (the projector's pending batch at
        start): afterwards every table, rollups included, holds each of its facts exactly once."""
        ...

    def figures(self, query: AnalyticsQuery) -> list[Figures]:
        """Dashboard figures per group, ordered by group (see `domain.usage_figures`)."""
        ...

    def delete_since(self, moment: datetime | None) -> None:
        """Deletes every fact at or after `moment` (all when None) from every table, for a rebuild;
        `moment` must be a midnight in the store's rollup time zone."""
        ...

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group."""
        ...

    def recent_requests(self, user_id: str, limit: int) -> list[RecentRequest]:
        """The user's last `limit` requests, newest first (ties: greater request id first)."""
        ...

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        ...
