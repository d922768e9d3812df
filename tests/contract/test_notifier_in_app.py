"""The in-app channel passes the notifier port's contract: notices on users' boards in the alerts
store, rebuilt from the board as the webhook receiver rebuilds a CloudEvent."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env
from adapters.notify.body import render
from adapters.notify.in_app import InAppNotifier
from domain.ports.notifier import DEFAULT_TYPE, Notification
from domain.services.alerts import Alerts
from tests.contract.test_notifier import NotifierContract


class TestInAppNotifier(NotifierContract):
    def make(self) -> InAppNotifier:
        return InAppNotifier(Alerts(FixedClock(datetime(2026, 3, 1, tzinfo=UTC)), env=memory_env()))

    def reachable(self, n: int = 0) -> str:
        return f"owner{n}"

    def unreachable(self) -> str:
        return "not a user id/"

    def received(self, notifier: InAppNotifier, recipient: str) -> list[Notification]:
        notices = sorted(notifier.alerts.notices(recipient), key=lambda n: n["posted_at"])
        return [Notification(n["id"], recipient, n["subject"], body_of(n)) for n in notices]


def body_of(notice: dict) -> dict:
    """A body sent as is comes back as the notice's data; one in the convention comes back whole."""
    as_is = notice["type"] == DEFAULT_TYPE and notice["text"] == render(notice["data"])
    if as_is:
        return notice["data"]
    return {"type": notice["type"], "text": notice["text"], "data": notice["data"]}
