"""The outbox relay: publishes the event store's domain events to meterline.domain.

It follows each application's notification log from a position stored in the event store
(a tracking record), publishes a page, waits until the bus has accepted all of it, and only
then stores the new position. A relay that dies re-publishes at most one page: the same
events with the same ids, in the same order, which subscribers ignore by version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio
from eventsourcing.persistence import Tracking

from domain.budget import Budget
from domain.jobs import Job
from domain.ports.bus import DOMAIN_TOPIC, EventBus
from domain.ports.clock import Clock
from domain.services.domain_messages import to_message
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from domain.services.stored_topics import event_topics

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, registry: Registry, ledger: Ledger, bus: EventBus, clock: Clock,
                 page: int = 500) -> None:
        self.bus = bus
        self.clock = clock
        self.page = page
        self.tracker = ledger.recorder  # positions live beside the ledger's own tracking records
        # The registry's log is all domain events; the ledger's also holds every RequestMetered
        # fact, which already travels on meterline.usage, so only budgets and jobs are relayed.
        self.sources = [(registry, ()), (ledger, tuple(event_topics(Budget) + event_topics(Job)))]
        self.relayed = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something new is in a log (the ledger just recorded): relay now, not at the next poll."""
        self._wake.set()

    def position(self, app_name: str) -> int:
        return self.tracker.max_tracking_id(f"outbox:{app_name}") or 0

    async def relay_once(self) -> int:
        """Publishes what is new in every log, one page each; returns how many events."""
        total = 0
        for app, topics in self.sources:
            start = await anyio.to_thread.run_sync(self.position, app.name)
            notifications = await anyio.to_thread.run_sync(
                lambda a=app, s=start, t=topics: a.notification_log.select(
                    start=s + 1, limit=self.page, topics=t))
            if not notifications:
                continue
            now = self.clock.now()
            compressor = app.mapper.compressor
            await self.bus.publish(DOMAIN_TOPIC, [to_message(app.name, n, now, compressor)
                                                  for n in notifications])
            tracking = Tracking(f"outbox:{app.name}", notifications[-1].id)
            await anyio.to_thread.run_sync(self.tracker.insert_tracking, tracking)
            total += len(notifications)
        self.relayed += total
        return total

    async def run(self, stop: asyncio.Event, idle_s: float = 0.05) -> None:
        while not stop.is_set():
            try:
                busy = await self.relay_once()
            except Exception:
                log.exception("outbox relay: publishing failed; retrying from the stored position")
                busy = 0
                await asyncio.sleep(1)
            if not busy:  # poll: other processes (a gateway's admin commands) write the logs too
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle_s)
                self._wake.clear()
