"""The e-mail channel when no SMTP server is configured: it logs that a message would have gone,
naming only the recipient and subject (a body may carry figures the log should not keep)."""

from __future__ import annotations

import logging

from domain.ports.notifier import Notification

log = logging.getLogger(__name__)


class LogOnlyNotifier:
    def __init__(self, channel: str = "email") -> None:
        self.channel = channel

    async def notify(self, notification: Notification) -> None:
        # one line each: a line break in either must not forge a log line
        log.info("%s not sent (no server configured) to %r: %s", self.channel,
                 notification.recipient, " ".join(notification.subject.split()))
