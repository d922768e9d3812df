"""Keeps a gateway replica's views current from meterline.domain (the outbox's topic).

A key revoked or a budget spent on one replica reaches every replica this way. The
subscriber starts at the topic's end *before* the views are loaded from the store, so
nothing published in between is missed; events the load already holds are skipped by
version, and a version gap reloads that aggregate from the store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
from eventsourcing.persistence import Mapper

from domain.budget import Budget
from domain.ports.bus import BusConsumer
from domain.services.domain_messages import to_stored_event
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from domain.services.stored_topics import event_topics
from gateway.views.quota_guard import QuotaGuard
from gateway.views.registry_view import RegistryView

log = logging.getLogger(__name__)


class BusFeed:
    def __init__(self, consumer: BusConsumer, registry: Registry, ledger: Ledger,
                 registry_view: RegistryView, guard: QuotaGuard) -> None:
        self.consumer = consumer
        self.targets: dict[str, tuple[Any, Any, frozenset[str] | None]] = {
            registry.name: (registry, registry_view, None),
            ledger.name: (ledger, guard, frozenset(event_topics(Budget))),
        }
        # The bus carries plain JSON states: decode them with each store's transcoder, without
        # the store's compressor (compressing them only to have the mapper decompress them).
        self.mappers = {registry.name: Mapper(transcoder=registry.mapper.transcoder),
                        ledger.name: Mapper(transcoder=ledger.mapper.transcoder)}
        self.applied = 0

    async def start(self) -> None:
        """Call before loading the views from the store."""
        await self.consumer.start()
        await self.consumer.seek_to_end()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run_once(self, timeout_ms: int = 100) -> int:
        deliveries = await self.consumer.fetch(1000, timeout_ms)
        for delivery in deliveries:
            try:
                app_name, stored = to_stored_event(delivery.message)
                app, view, topics = self.targets[app_name]
            except (KeyError, ValueError) as exc:
                log.warning("domain subscriber: ignoring message %s: %s", delivery.message.id, exc)
                continue
            if topics is not None and stored.topic not in topics:
                continue
            event = self.mappers[app_name].to_domain_event(stored)
            if not view.apply(event):
                aggregate = await anyio.to_thread.run_sync(app.repository.get, event.originator_id)
                view.put(aggregate)
            self.applied += 1
        return len(deliveries)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("domain subscriber: a batch failed; continuing")
                await asyncio.sleep(0.5)
