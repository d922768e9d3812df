"""The notifier port: tells a person (e-mail, webhook, in-app) that something happened.

Adapters: the in-memory twin `adapters/notify/memory.py` (real channels come with alerts);
every adapter passes `tests/contract/test_notifier.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Notification:
    """One message to one recipient: an address the channel understands (an e-mail address,
    a webhook URL, a user id for in-app), a one-line subject and a JSON-able body.

    `notification_id` is the idempotency key: a channel delivers one id once."""

    notification_id: str
    recipient: str
    subject: str
    body: dict[str, Any] = field(default_factory=dict)


class NotificationFailed(Exception):
    """The channel could not deliver; `permanent` says a retry cannot help (a refused address)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Notifier(Protocol):
    async def notify(self, notification: Notification) -> None:
        """Returns once the channel has accepted the notification; raises NotificationFailed.

        Delivering an id already delivered does nothing (the alerts worker retries)."""
        ...
