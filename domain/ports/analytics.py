"""The analytics port: usage facts for dashboards and reports, queried in one SQL dialect.

Adapters: `adapters/analytics/chdb.py` (embedded), `adapters/analytics/clickhouse.py`
(server) and the in-memory twin `adapters/analytics/memory.py`; all pass
`tests/contract/test_analytics_store.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from domain.usage import RequestMetered


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


class AnalyticsStore(Protocol):
    """Usage facts for analytics. Inserts are idempotent: a fact counts once per event id."""

    def ensure_schema(self) -> None: ...

    def insert_usage(self, facts: Sequence[RequestMetered]) -> None: ...

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group."""
        ...

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        ...
