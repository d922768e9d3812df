"""Reading a bus topic in batches sized to the consumer's cost per batch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from domain.ports.bus import BusConsumer, Delivery


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
