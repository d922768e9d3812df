"""The in-app channel: a notice on the recipient user's board in the alerts store
(`GET /api/me/notices`). The recipient is a user id; posting one notification id twice posts once."""

from __future__ import annotations

import anyio

from domain.ports.notifier import Notification, NotificationFailed
from domain.services.alerts import Alerts


class InAppNotifier:
    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts

    async def notify(self, notification: Notification) -> None:
        body = notification.body
        text = body.get("text") if isinstance(body.get("text"), str) else notification.subject
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        try:
            await anyio.to_thread.run_sync(self.alerts.post_notice, notification.recipient,
                                           notification.notification_id, notification.subject, text, data)
        except Exception as exc:  # the store is briefly unavailable: the worker retries
            raise NotificationFailed(f"posting the notice failed: {exc}") from exc
