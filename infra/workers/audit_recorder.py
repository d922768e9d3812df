"""The audit recorder: follows the registry's and the ledger's notification logs into the trail.

Each page of a log becomes one append, stored with the log's position in the same
transaction (a tracking record in the trail's store): a recorder that dies between pages
starts again from the last page it stored, and a page appended twice (two recorders, a
retry after a lost answer) is stored once. Runs in the ledger's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from uuid import UUID

import anyio
from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from domain.services.audit_of_events import LEDGER_TOPICS, entry_of
from domain.services.audit_trail import AuditTrail
from domain.services.ledger import Ledger
from domain.services.registry import Registry

log = logging.getLogger(__name__)
PAGE = 500
NATURAL_IDS = 10_000  # aggregates whose user id, team id, model or budget scope is remembered


class AuditRecorder:
    def __init__(self, trail: AuditTrail, registry: Registry, ledger: Ledger, page: int = PAGE) -> None:
        self.trail = trail
        self.page = page
        self.registry = registry
        self.ledger = ledger
        # The registry's log is all admin-made state; the ledger's is mostly usage, of which
        # only budget states and job lifecycles are recorded (audit_of_events.py says why).
        self.sources: list[tuple[Application, tuple[str, ...]]] = [(registry, ()), (ledger, LEDGER_TOPICS)]
        self.recorded = 0
        self._natural: dict[UUID, str | None] = {}

    def position(self, app: Application) -> int:
        return self.trail.position(app.name)

    def record_once(self) -> int:
        """Appends what is new in each log, one page each; returns how many events were read."""
        total = 0
        for app, topics in self.sources:
            notifications = app.notification_log.select(start=self.position(app) + 1, limit=self.page,
                                                        topics=topics)
            if not notifications:
                continue
            entries = [entry_of(n.topic, app.mapper.to_domain_event(n), self._resolve)
                       for n in notifications]
            self.trail.append(entries, Tracking(app.name, notifications[-1].id))
            total += len(notifications)
        self.recorded += total
        return total

    def record_all(self) -> int:
        """Follows every log to its end (tests, and a catch-up at start)."""
        total = 0
        while busy := self.record_once():
            total += busy
        return total

    async def run(self, stop: asyncio.Event, idle_s: float = 0.2) -> None:
        while not stop.is_set():
            try:
                busy = await anyio.to_thread.run_sync(self.record_once)
            except Exception:
                # the store may be briefly unavailable; the stored position makes a retry safe
                log.exception("audit recorder: appending failed; retrying from the stored position")
                busy = 0
                await asyncio.sleep(1)
            if not busy:  # admin commands are written by other processes: poll their logs
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle_s)

    def _resolve(self, subject: str, aggregate_id: UUID) -> str | None:
        """The natural id of an aggregate whose event names only its aggregate id; it never
        changes, so it is read once per aggregate."""
        if aggregate_id not in self._natural:
            if len(self._natural) >= NATURAL_IDS:
                self._natural.clear()
            self._natural[aggregate_id] = self._read_natural(subject, aggregate_id)
        return self._natural[aggregate_id]

    def _read_natural(self, subject: str, aggregate_id: UUID) -> str | None:
        app = self.ledger if subject == "budget" else self.registry
        try:
            aggregate = app.repository.get(aggregate_id)
        except Exception:  # noqa: BLE001 - an unreadable aggregate still gets its entry, by id
            log.warning("audit recorder: %s %s could not be read to name it", subject, aggregate_id)
            return None
        if subject == "budget":
            return f"{aggregate.scope.value}:{aggregate.scope_id}"
        return getattr(aggregate, {"user": "user_id", "team": "team_id", "model": "model"}[subject], None)
