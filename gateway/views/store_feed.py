"""Keeps the gateway's in-memory views (RegistryView, QuotaGuard) in step with the stores.

At start-up it folds the whole registry log and loads each principal's budget; then it
follows both logs from where it stood. A version gap (an event missed) reloads that
aggregate from its store, so the views heal instead of drifting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import anyio

from domain.budget import Budget
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from domain.services.stored_topics import event_topics
from gateway.views.quota_guard import QuotaGuard
from gateway.views.registry_view import RegistryView

log = logging.getLogger(__name__)
PAGE = 1000


class StoreFeed:
    def __init__(self, registry: Registry, ledger: Ledger, registry_view: RegistryView,
                 guard: QuotaGuard) -> None:
        self.registry = registry
        self.ledger = ledger
        self.registry_view = registry_view
        self.guard = guard
        self._registry_position = 0
        self._ledger_position = 0
        self._budget_topics = event_topics(Budget)

    def bootstrap(self) -> None:
        """Folds the registry log and loads current budgets (blocking: call from a thread)."""
        self._ledger_position = self.ledger.recorder.max_notification_id() or 0
        self.pull_registry()
        for scope, scope_id in self.registry_view.budget_scopes():
            budget = self.ledger.budget(scope, scope_id)
            if budget is not None:
                self.guard.put(budget)
        self.pull_ledger()

    def pull(self) -> int:
        """Applies every new event of both logs; returns how many (blocking)."""
        return self.pull_registry() + self.pull_ledger()

    def pull_registry(self) -> int:
        return self._follow(self.registry, "_registry_position", (), self.registry_view.apply,
                            self.registry_view.put)

    def pull_ledger(self) -> int:
        return self._follow(self.ledger, "_ledger_position", self._budget_topics, self.guard.apply,
                            self.guard.put)

    def _follow(self, app: Any, position_attr: str, topics: Any, apply: Any, put: Any) -> int:
        applied = 0
        while True:
            start = getattr(self, position_attr) + 1
            batch = app.notification_log.select(start=start, limit=PAGE, topics=topics)
            if not batch:
                return applied
            for notification in batch:
                event = app.mapper.to_domain_event(notification)
                if not apply(event):
                    put(app.repository.get(event.originator_id))
                applied += 1
            setattr(self, position_attr, batch[-1].id)
            if len(batch) < PAGE:
                return applied

    async def run(self, stop: asyncio.Event, interval_s: float = 0.1) -> None:
        """Follows both logs until `stop` is set; errors are logged and retried."""
        while not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.pull)
            except Exception:  # the feed must outlive a transient store error
                log.exception("event feed: pulling new events failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
