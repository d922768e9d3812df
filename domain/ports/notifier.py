"""The notifier port: tells a person (e-mail, webhook, in-app) that something happened.

Adapters: the in-memory twin `adapters/notify/memory.py`, e-mail over SMTP
`adapters/notify/smtp.py`, signed webhooks `adapters/notify/webhook.py`; every adapter passes
`tests/contract/test_notifier.py`.

Body convention (the alerts worker follows it): `{"type": "meterline.alert.triggered",
"text": "<plain-text message>", "data": {...JSON facts...}}`. `type` is a CloudEvents type,
`text` what a person reads (the e-mail's text, a webhook's `text` attribute), `data` the facts a
program reads. A body with other keys is sent as is: type `meterline.notification`, its text a
readable rendering of the body, and on a webhook the whole body is the event's `data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_TYPE = "meterline.notification"
CONVENTION_KEYS = frozenset({"type", "text", "data"})


@dataclass(frozen=True)
class Notification:
    """One message to one recipient: an address the channel understands (an e-mail address,
    a webhook URL, a user id for in-app), a one-line subject and a JSON-able body.

    `notification_id` is the idempotency key: a channel delivers one id once.
    `signing_secret` is what a webhook is signed with (the rule's secret); other channels
    ignore it. It never shows in a repr and takes no part in equality."""

    notification_id: str
    recipient: str
    subject: str
    body: dict[str, Any] = field(default_factory=dict)
    signing_secret: str | None = field(default=None, repr=False, compare=False)


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
