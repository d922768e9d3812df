"""Group commit of publishes to a journal: everything published while one write ran goes
out in the next, and each publisher's future says how its records fared. Shared by the
in-process bus and the journal bus, which differ only in what follows a write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Publish = tuple[str, list[tuple[int, bytes]], asyncio.Future[None]]  # topic, records, done
Line = tuple[str, int, bytes]  # topic, partition, record


async def write_batch(batch: list[Publish], write: Callable[[list[Line]], Awaitable[None]]) -> bool:
    """Writes a batch's records in one go. On failure (disk full, I/O error) every publisher of
    the batch raises it and False comes back; on success the caller settles the batch."""
    lines = [(topic, partition, record) for topic, records, _ in batch for partition, record in records]
    try:
        await write(lines)
    except Exception as error:
        settle(batch, error)
        return False
    return True


def settle(batch: list[Publish], error: BaseException | None = None) -> None:
    """Resolves the publishers' futures; one cancelled meanwhile is passed over."""
    for *_, done in batch:
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
