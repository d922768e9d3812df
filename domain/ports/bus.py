"""The event bus port: CloudEvents published and consumed by topic, ordered per key.

Adapters: `adapters/bus/journal_bus.py` (the embedded default: a durable journal other processes
follow), `adapters/bus/inproc.py` (one process, tests) and
`adapters/bus/kafka.py`; all pass `tests/contract/test_event_bus.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

USAGE_TOPIC = "meterline.usage"    # RequestMetered, keyed by key id
DOMAIN_TOPIC = "meterline.domain"  # domain events from the event store, keyed by aggregate id


class BusMessage(NamedTuple):
    """A CloudEvents 1.0 event (JSON structured mode) plus the partitioning key.

    Immutable; a NamedTuple because one is built per request and per fact read, and a
    frozen dataclass costs several times more to build."""

    id: str           # the event id: the idempotency key
    type: str         # e.g. "meterline.request.metered"
    source: str       # e.g. "/meterline/gateway/gw-1"
    subject: str      # the principal or aggregate the event concerns
    time: datetime
    data: dict[str, Any]
    key: str          # partitioning key: same key, same partition, same order
    schema_version: int = 1
    extensions: Mapping[str, str] = MappingProxyType({})


class Delivery(NamedTuple):
    message: BusMessage
    partition: int
    offset: int


class EventBus(Protocol):
    """Publishes and delivers BusMessages; at-least-once, ordered per key."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        """Returns once every message is durably accepted; raises if any is not.

        Once a topic is in use, the messages are queued before the first suspension point,
        so a publisher cancelled while it waits does not take its messages back.
        """
        ...

    def consumer(self, topic: str, group: str) -> BusConsumer:
        """A consumer of every partition of `topic`; positions are the caller's to choose."""
        ...


class BusConsumer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def partitions(self) -> list[int]: ...

    def seek(self, partition: int, offset: int) -> None:
        """The next fetch from `partition` starts at `offset`."""
        ...

    async def seek_to_committed(self) -> None:
        """Resumes every partition from the group's committed offsets (or the beginning)."""
        ...

    async def seek_to_end(self) -> None:
        """Skips history: the next fetch returns only messages published from now on."""
        ...

    async def fetch(self, max_records: int, timeout_ms: int) -> list[Delivery]:
        """Up to `max_records` deliveries, in offset order per partition; [] on timeout."""
        ...

    async def commit(self, positions: dict[int, int]) -> None:
        """Stores the group's next offset per partition (for consumers without own tracking)."""
        ...
