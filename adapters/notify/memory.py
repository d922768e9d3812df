"""The notifier port's in-memory twin: an inbox per recipient, for tests and the console.

Recipients listed in `unreachable` fail permanently, as an address a mail server refuses.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from domain.ports.notifier import Notification, NotificationFailed


class InMemoryNotifier:
    def __init__(self, unreachable: frozenset[str] = frozenset()) -> None:
        self.unreachable = unreachable
        self.inboxes: dict[str, list[Notification]] = defaultdict(list)
        self._delivered: set[str] = set()
        self._lock = asyncio.Lock()

    async def notify(self, notification: Notification) -> None:
        if notification.recipient in self.unreachable:
            raise NotificationFailed(f"{notification.recipient} cannot be reached", permanent=True)
        async with self._lock:
            if notification.notification_id in self._delivered:
                return
            self._delivered.add(notification.notification_id)
            self.inboxes[notification.recipient].append(notification)

    def inbox(self, recipient: str) -> list[Notification]:
        """What `recipient` received, oldest first."""
        return list(self.inboxes.get(recipient, []))
