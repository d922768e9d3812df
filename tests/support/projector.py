"""For the ledger projector's tests: facts, a ledger to record them, and stores that misbehave.

`BatchedRollup` stands in for a rollup fed by a materialized view: it counts every fact of a
batch it has not seen, with no per-fact deduplication at all, and a batch id seen before
counts nothing (ClickHouse's `insert_deduplication_token`). So it double-counts exactly when
the projector repeats a fact under a new batch id, and it fails loudly when a batch id comes
back with different facts, the two ways the real views would go wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.ports.analytics import AnalyticsStore
from domain.services.ledger import BusPosition, Ledger
from domain.usage import RequestMetered, UsageSource

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def fact(n: int, **fields: Any) -> RequestMetered:
    """Fact `n`: a request every 37 minutes from T0 (so facts span weeks), costs all different."""
    defaults: dict[str, Any] = dict(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"projector/{n}")),
        occurred_at=T0 + timedelta(minutes=37 * n), key_id=f"key-{n % 5}", user_id=f"user-{n % 3}",
        team_id="red" if n % 2 else None, model=("gemma-3", "qwen")[n % 2],
        endpoint="/v1/chat/completions", prompt_tokens=100 + n, completion_tokens=n % 50,
        cached_tokens=n % 7, latency_ms=20 + n % 300, status=200 if n % 11 else 500,
        usage_source=UsageSource.UPSTREAM, price_version=1, cost=1_000_003 * n)
    return RequestMetered(**{**defaults, **fields})


class LedgerFeed:
    """Records facts in a ledger as the ledger worker does: each call one batch from one partition."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.offset = 0

    def record(self, facts: Sequence[RequestMetered], partition: int = 0) -> None:
        self.offset += len(facts)
        self.ledger.record_usage(list(facts), BusPosition("meterline.usage", partition, self.offset))


class NotTheSameBatch(AssertionError):
    pass


class BatchedRollup:
    """An AnalyticsStore in front of `inner` that also keeps a view-like sum per batch (see above)."""

    def __init__(self, inner: AnalyticsStore) -> None:
        self.inner = inner
        self.batches: dict[str, tuple[str, ...]] = {}
        self.inserts: list[tuple[str | None, tuple[str, ...]]] = []  # every call, in order
        self.recoveries: list[str] = []  # batch ids recovered after a crash
        self.requests = self.cost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        ids = tuple(f.event_id for f in facts)
        self.inserts.append((batch_id, ids))
        self.inner.insert_usage(facts, batch_id=batch_id)
        if batch_id is not None and batch_id in self.batches:
            if self.batches[batch_id] != ids:
                raise NotTheSameBatch(f"batch {batch_id} came back with other facts")
            return
        if batch_id is not None:
            self.batches[batch_id] = ids
        self.requests += sum(f.requests for f in facts)
        self.cost += sum(f.cost for f in facts)

    def recover_batch(self, facts: Sequence[RequestMetered], batch_id: str) -> None:
        # made whole: the view counts the batch once, whether or not its first insert reached it
        self.recoveries.append(batch_id)
        self.insert_usage(facts, batch_id=batch_id)

    def delete_since(self, moment: datetime | None) -> None:
        # a rebuild: the view's sums start again, and so does the projector's generation
        self.inner.delete_since(moment)
        self.requests = self.cost = 0
        self.batches.clear()


class ProcessKilled(BaseException):
    """The process dies here (a BaseException: nothing in the projector may catch it)."""


class DiesAfterInsert:
    """A store whose insert succeeds, and then the process dies before the projector goes on."""

    def __init__(self, inner: AnalyticsStore, after: int = 1) -> None:
        self.inner, self.after = inner, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        self.inner.insert_usage(facts, batch_id=batch_id)
        self.after -= 1
        if self.after == 0:
            raise ProcessKilled


class FailsMidway:
    """A store that takes the first half of a batch and then fails (a server dropping the
    connection), `failures` times."""

    def __init__(self, inner: AnalyticsStore, failures: int = 1) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        if self.failures:
            self.failures -= 1
            self.inner.insert_usage(facts[: len(facts) // 2], batch_id=None)
            raise ConnectionError("analytics store went away mid-insert")
        self.inner.insert_usage(facts, batch_id=batch_id)


SOURCES = ("raw", "hourly", "daily")
GROUPINGS: tuple[tuple[str, ...], ...] = ((), ("user",), ("model", "day"), ("key", "team", "day"),
                                          ("application", "user"))


def figure_differences(store: AnalyticsStore, facts: Sequence[RequestMetered], start: datetime,
                       end: datetime, sources: Sequence[str] = SOURCES) -> list[str]:
    """Where the store's figures, read from each of `sources`, differ from the plain fold of the
    ledger's facts over [start, end) (midnights in UTC, the rollups' zone); empty when none do."""
    from domain.usage_figures import AnalyticsQuery, fold_figures
    found = []
    for group_by in GROUPINGS:
        wanted = fold_figures(facts, AnalyticsQuery(start, end, group_by=group_by))
        for source in sources:
            got = store.figures(AnalyticsQuery(start, end, group_by=group_by, source=source))
            if got != wanted:
                found.append(f"{source} by {group_by or 'nothing'}: {len(got)} groups, "
                             f"{sum(f.requests for f in got)} requests; ledger {len(wanted)} groups, "
                             f"{sum(f.requests for f in wanted)} requests")
    return found


def midnight(moment: datetime, days: int = 0) -> datetime:
    """UTC midnight of `moment`'s day, `days` later."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)
