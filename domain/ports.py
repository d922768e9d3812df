"""Ports: what the domain needs from the outside world, as Protocols.

Each port has an in-memory (or embedded) adapter and a production adapter in
`adapters/`, and both pass one contract suite in `tests/contract/`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from domain.clock import Clock
from domain.usage import RequestMetered

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


async def fetch_batch(consumer: BusConsumer, max_records: int, wait_ms: int, linger_ms: int,
                      sleep: Callable[[float], Awaitable[None]], linger_from: int = 1
                      ) -> list[Delivery]:
    """Waits up to `wait_ms` for a first delivery; then, if that brought at least
    `linger_from` records but not `max_records`, lets more arrive for `linger_ms` and takes
    what came (up to `max_records`).

    For consumers whose cost is per batch (a transaction, a ClickHouse part): under load
    they get few large batches instead of many small ones, at the price of `linger_ms` of
    lag. With `linger_from` above 1, a consumer that is keeping up (its first fetch brings
    only a few records) does not linger, so light traffic sees no added lag.
    """
    batch = await consumer.fetch(max_records, wait_ms)
    if len(batch) < max(linger_from, 1) or len(batch) >= max_records or linger_ms <= 0:
        return batch
    await sleep(linger_ms / 1000)
    while len(batch) < max_records:
        more = await consumer.fetch(max_records - len(batch), 0)
        if not more:
            break
        batch.extend(more)
    return batch


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class UpstreamUnavailable(Exception):
    """The model server could not be reached or broke the connection."""


class UpstreamTimeout(Exception):
    """The model server did not answer in time."""


class UpstreamStream(Protocol):
    status: int
    headers: dict[str, str]

    def lines(self) -> AsyncIterator[bytes]:
        """The response body line by line (SSE), without line endings."""
        ...

    async def read(self) -> bytes: ...

    async def close(self) -> None:
        """Stops reading; the upstream stops generating."""
        ...


class Upstream(Protocol):
    """An OpenAI-compatible model server reached over pooled HTTP connections."""

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse: ...

    async def stream(self, url: str, body: bytes, timeout_s: float) -> UpstreamStream: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class UsageQuery:
    """A usage question over the half-open interval [start, end), optionally grouped."""

    start: datetime
    end: datetime
    user_id: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    group_by: str | None = None  # None | "day" | "model" | "key" | "user" | "team"
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


class Notifier(Protocol):
    async def notify(self, recipient: str, subject: str, body: dict[str, Any]) -> None: ...


__all__ = ["Clock", "DOMAIN_TOPIC", "USAGE_TOPIC", "BusConsumer", "BusMessage", "Delivery",
           "EventBus", "Notifier", "Upstream", "UpstreamResponse", "UpstreamStream",
           "UpstreamTimeout", "UpstreamUnavailable",
           "AnalyticsStore", "UsageQuery", "UsageTotals"]
