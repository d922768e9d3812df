"""The in-memory analytics store: the twin the contract suite holds the ClickHouse adapters to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from adapters.analytics.figures_sql import delete_statements
from adapters.analytics.migrate import check_zone
from adapters.analytics.planner import plan
from adapters.analytics.sql import check_limit, check_query
from domain.audit import ChainedEntry
from domain.ports.analytics import RecentRequest, UsageQuery, UsageTotals
from domain.ports.audit_index import AuditIndexQuery, check_index_query
from domain.usage import RequestMetered
from domain.usage_figures import AnalyticsQuery, Figures, fold_figures


class InMemoryAnalytics:
    """AnalyticsStore over a dict keyed by event id; the first copy of a fact is the one kept."""

    def __init__(self, rollup_timezone: str = "UTC") -> None:
        self._facts: dict[str, RequestMetered] = {}
        self._lock = threading.Lock()
        self.rollup_timezone = check_zone(rollup_timezone)
        self._audit: dict[int, ChainedEntry] = {}  # by seq; the first copy is kept

    def ensure_schema(self) -> None:
        pass

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        for fact in facts:
            if fact.occurred_at.tzinfo is None or fact.occurred_at.utcoffset() is None:
                raise ValueError(f"fact {fact.event_id}: occurred_at must be timezone-aware")
        with self._lock:
            for fact in facts:
                self._facts.setdefault(fact.event_id, fact)

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group; ungrouped, always one row."""
        check_query(query)
        group_of = _grouping(query)
        totals: dict[str, list[int]] = {"": [0] * 5} if query.group_by is None else {}
        with self._lock:
            facts = list(self._facts.values())
        for fact in facts:
            if not _matches(query, fact):
                continue
            sums = totals.setdefault(group_of(fact), [0] * 5)
            sums[0] += fact.requests
            sums[1] += fact.prompt_tokens
            sums[2] += fact.completion_tokens
            sums[3] += fact.cached_tokens
            sums[4] += fact.cost
        return [UsageTotals(group, *sums) for group, sums in sorted(totals.items())]

    def recover_batch(self, facts: Sequence[RequestMetered], batch_id: str) -> None:
        """Nothing here can be cut short: the same as inserting the batch."""
        self.insert_usage(facts, batch_id)

    def figures(self, query: AnalyticsQuery) -> list[Figures]:
        """Dashboard figures per group, folded from the facts themselves; a forced rollup source
        that could not answer exactly is refused, as the SQL stores refuse it."""
        plan(query, self.rollup_timezone)
        with self._lock:
            facts = list(self._facts.values())
        return fold_figures(facts, query)

    def delete_since(self, moment: datetime | None) -> None:
        """Forgets every fact at or after `moment` (all when None); `moment` must be a midnight in
        the rollup time zone, as in the SQL stores."""
        if moment is not None:
            delete_statements(moment, self.rollup_timezone)  # only its check: nothing to run here
        with self._lock:
            if moment is None:
                self._facts.clear()
            else:
                self._facts = {i: f for i, f in self._facts.items() if f.occurred_at < moment}

    def recent_requests(self, user_id: str, limit: int) -> list[RecentRequest]:
        """The user's last `limit` requests, newest first; a request's parts are one entry."""
        check_limit(limit)
        with self._lock:
            facts = [f for f in self._facts.values() if f.user_id == user_id]
        parts: dict[str, list[RequestMetered]] = {}
        for fact in facts:
            parts.setdefault(fact.request, []).append(fact)
        requests = [_merged(request, group) for request, group in parts.items()]
        requests.sort(key=lambda r: (r.occurred_at, r.request_id), reverse=True)
        return requests[:limit]

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        with self._lock:
            return len(self._facts)

    # ----- the audit index (domain.ports.audit_index) -----------------------------------------

    def insert_audit(self, entries: Sequence[ChainedEntry]) -> None:
        with self._lock:
            for chained in entries:
                self._audit.setdefault(chained.seq, chained)

    def audit_entries(self, query: AuditIndexQuery) -> list[ChainedEntry]:
        """The matching entries, newest first."""
        check_index_query(query)
        with self._lock:
            held = sorted(self._audit.values(), key=lambda c: c.seq, reverse=True)
        found = [c for c in held if (query.before is None or c.seq < query.before)
                 and (query.upto is None or c.seq <= query.upto) and query.where.matches(c.entry)]
        return found[:query.limit]

    def audit_position(self) -> int:
        """The n such that entries 1..n are held and none after."""
        with self._lock:
            n = len(self._audit)
            if n == max(self._audit, default=0):
                return n
            n = 0
            while n + 1 in self._audit:
                n += 1
            return n

    def delete_audit(self) -> None:
        with self._lock:
            self._audit.clear()


def _matches(query: UsageQuery, fact: RequestMetered) -> bool:
    return (query.start <= fact.occurred_at < query.end
            and query.user_id in (None, fact.user_id)
            and query.team_id in (None, fact.team_id or "")
            and query.key_id in (None, fact.key_id)
            and query.model in (None, fact.model))


def _grouping(query: UsageQuery) -> Callable[[RequestMetered], str]:
    if query.group_by == "day":
        zone = ZoneInfo(query.timezone)
        return lambda fact: fact.occurred_at.astimezone(zone).date().isoformat()
    if query.group_by == "application":
        return lambda fact: fact.labels.get("app", "")
    column = {None: None, "model": "model", "key": "key_id", "user": "user_id", "team": "team_id"}
    name = column[query.group_by]
    return lambda fact: "" if name is None else getattr(fact, name) or ""


def _merged(request: str, parts: list[RequestMetered]) -> RecentRequest:
    latest = max(parts, key=lambda f: (f.occurred_at, f.event_id))
    return RecentRequest(
        request_id=request, occurred_at=latest.occurred_at, model=latest.model, key_id=latest.key_id,
        prompt_tokens=sum(f.prompt_tokens for f in parts),
        completion_tokens=sum(f.completion_tokens for f in parts), cost=sum(f.cost for f in parts),
        latency_ms=latest.latency_ms, status=latest.status, application=latest.labels.get("app", ""))
