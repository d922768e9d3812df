"""The event store's in-memory twin, reopenable: eventsourcing's POPO recorders kept per name.

A store named by `MEMORY_STORE_NAME` keeps its recorders for the life of the process, so
applications opened again on that name find what earlier ones wrote, as they would on a
file or a server; that is what lets the event-store suite (reopen, replay, two writers)
run on it. Without a name every application gets fresh recorders. `forget` drops a store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, ProcessRecorder
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import resolve_topic

_STORES: dict[str, dict[tuple[str, str], Any]] = {}
_LOCK = threading.Lock()


class MemoryStoreFactory(POPOFactory):
    def _shared(self, purpose: str, make: Callable[[], Any]) -> Any:
        name = self.env.get("MEMORY_STORE_NAME")
        if not name:
            return make()
        with _LOCK:
            store = _STORES.setdefault(name, {})
            key = (self.env.name, purpose)
            if key not in store:
                store[key] = make()
            return store[key]

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return self._shared(purpose, super().aggregate_recorder)

    def application_recorder(self) -> ApplicationRecorder:
        return self._shared("events", super().application_recorder)

    def process_recorder(self) -> ProcessRecorder:
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        make = resolve_topic(topic) if topic else super().process_recorder
        return self._shared("events", make)


def forget(name: str) -> None:
    """Drops the named store and everything in it."""
    with _LOCK:
        _STORES.pop(name, None)
