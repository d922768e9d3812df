"""Delivering one notification id once within a process, however many callers race to send it.

A channel's receiver cannot tell two sends apart reliably (a mail server takes both), so the
channel itself remembers the ids it delivered. The memory is bounded, and a restart forgets:
across restarts the alerts worker's delivery records and the ids the message carries
(`Message-ID`, `webhook-id`) let the receiving end drop a repeat.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

REMEMBERED_IDS = 100_000


class OnceById:
    def __init__(self, remembered: int = REMEMBERED_IDS) -> None:
        self._remembered = remembered
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    async def run(self, notification_id: str, send: Callable[[], Awaitable[None]]) -> None:
        """Runs `send` unless the id was delivered; a caller racing one in flight shares its outcome."""
        if notification_id in self._delivered:
            return
        running = self._in_flight.get(notification_id)
        if running is not None:
            # shield: one waiter cancelled must not cancel the send the others wait on
            return await asyncio.shield(running)
        task = asyncio.ensure_future(send())
        self._in_flight[notification_id] = task
        task.add_done_callback(lambda done: self._settle(notification_id, done))
        await asyncio.shield(task)

    def _settle(self, notification_id: str, done: asyncio.Future[None]) -> None:
        self._in_flight.pop(notification_id, None)
        if not done.cancelled() and done.exception() is None:
            self._remember(notification_id)

    def _remember(self, notification_id: str) -> None:
        self._delivered[notification_id] = None
        if len(self._delivered) > self._remembered:
            self._delivered.popitem(last=False)
