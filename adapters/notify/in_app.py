"""The in-app channel: a notice on the recipient user's board in the alerts store
(`GET /api/me/notices`). The recipient is a user id; posting one notification id twice posts once.

The body is read by the port's convention (`body.py`), as e-mail and webhooks read it: a notice
keeps its type, text and data, so what arrived can be rebuilt (the contract suite does).
"""

from __future__ import annotations

import anyio

from adapters.notify.body import data_of, event_type, text_of
from domain.ids import is_valid_id
from domain.ports.notifier import Notification, NotificationFailed
from domain.services.alerts import Alerts


class InAppNotifier:
    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    async def notify(self, notification: Notification) -> None:
        if not is_valid_id(notification.recipient):
            raise NotificationFailed(f"{notification.recipient[:64]!r} is not a user id; in-app notices "
                                     "go to users", permanent=True)
        data = data_of(notification)
        try:
            await anyio.to_thread.run_sync(
                lambda: self.alerts.post_notice(notification.recipient, notification.notification_id,
                                                notification.subject, text_of(notification),
                                                data if isinstance(data, dict) else {"value": data},
                                                event_type(notification)))
        except Exception as exc:  # the store is briefly unavailable: the worker retries
            raise NotificationFailed(f"posting the notice failed: {exc}") from exc
