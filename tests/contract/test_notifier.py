"""The notifier port's contract: the in-memory twin, e-mail over SMTP to a real aiosmtpd server on
loopback, and signed webhooks to a real receiver that verifies each signature; the receiving end
rebuilds every notification from what arrived (tests/support/smtp_server.py, webhook_receiver.py)."""

from __future__ import annotations

import asyncio

import pytest

from adapters.notify.email_message import read_notification
from adapters.notify.memory import InMemoryNotifier
from adapters.notify.smtp import SmtpConfig, SmtpNotifier
from adapters.notify.webhook import WebhookNotifier
from domain.ports.notifier import Notification, NotificationFailed
from tests.support.smtp_server import SmtpServer, smtp_server
from tests.support.webhook_receiver import WebhookReceiver, notification_from, webhook_receiver

# the rule's secret the alerts worker passes; channels other than webhooks ignore it
SECRET = "whsec-contract-0123456789abcdef"


def note(notification_id: str, to: str, subject: str, body: dict) -> Notification:
    return Notification(notification_id, to, subject, body, signing_secret=SECRET)


class NotifierContract:
    """An adapter gives a notifier, a recipient it can reach, one it cannot, and a way to read
    what the receiving end got."""

    def make(self):
        raise NotImplementedError

    def reachable(self, n: int = 0) -> str:
        raise NotImplementedError

    def unreachable(self) -> str:
        raise NotImplementedError

    def received(self, notifier, recipient: str) -> list[Notification]:
        raise NotImplementedError

    async def test_a_notification_reaches_its_recipient_with_subject_and_body(self) -> None:
        notifier, to = self.make(), self.reachable()
        sent = note("n-1", to, "Budget at 80 %", {"spent_usd": "8.00", "limit_usd": "10.00"})
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_a_body_in_the_alert_convention_arrives_with_its_type_text_and_data(self) -> None:
        notifier, to = self.make(), self.reachable()
        sent = note("n-4", to, "Team research at 95 %", {
            "type": "meterline.alert.triggered",
            "text": "Team research has spent $95.00 of $100.00 this month.\nRequests are refused at 100 %.",
            "data": {"scope": "team", "scope_id": "research", "percent": 95, "spent_usd": "95.00"}})
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_text_outside_ascii_arrives_unchanged(self) -> None:
        notifier, to = self.make(), self.reachable()
        sent = note("n-2", to, "Équipe « Recherche » — 95 %", {"team": "Forschung & Entwicklung ✓"})
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_one_notification_id_is_delivered_once(self) -> None:
        notifier, to = self.make(), self.reachable()
        sent = note("n-3", to, "Budget exceeded", {})
        await asyncio.gather(*(notifier.notify(sent) for _ in range(5)))
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_concurrent_notifications_to_many_recipients_all_arrive_in_their_inbox(self) -> None:
        notifier = self.make()
        sent = [note(f"c-{n}", self.reachable(n % 3), f"alert {n}", {"n": n}) for n in range(30)]
        await asyncio.gather(*(notifier.notify(s) for s in sent))
        for r in range(3):
            got = self.received(notifier, self.reachable(r))
            assert sorted(got, key=lambda s: s.body["n"]) == [s for s in sent if s.body["n"] % 3 == r]

    async def test_an_unreachable_recipient_fails_permanently_and_others_still_get_theirs(self) -> None:
        notifier, to = self.make(), self.reachable()
        with pytest.raises(NotificationFailed) as failed:
            await notifier.notify(note("u-1", self.unreachable(), "lost", {}))
        assert failed.value.permanent
        await notifier.notify(note("u-2", to, "kept", {}))
        assert [s.subject for s in self.received(notifier, to)] == ["kept"]


class TestInMemoryNotifier(NotifierContract):
    def make(self) -> InMemoryNotifier:
        return InMemoryNotifier(unreachable=frozenset({"nobody@invalid"}))

    def reachable(self, n: int = 0) -> str:
        return f"owner{n}@example.com"

    def unreachable(self) -> str:
        return "nobody@invalid"

    def received(self, notifier: InMemoryNotifier, recipient: str) -> list[Notification]:
        return notifier.inbox(recipient)


class TestSmtpNotifier(NotifierContract):
    server: SmtpServer

    @pytest.fixture(autouse=True)
    def _server(self):
        with smtp_server(refused=frozenset({"nobody@example.com"})) as server:
            self.server = server
            yield

    def make(self) -> SmtpNotifier:
        return SmtpNotifier(SmtpConfig(self.server.host, self.server.port, "alerts@meterline.example"))

    def reachable(self, n: int = 0) -> str:
        return f"owner{n}@example.com"

    def unreachable(self) -> str:
        return "nobody@example.com"  # refused by the server with 550

    def received(self, notifier: SmtpNotifier, recipient: str) -> list[Notification]:
        return [read_notification(m) for m in self.server.messages_to(recipient)]


class TestWebhookNotifier(NotifierContract):
    receiver: WebhookReceiver

    @pytest.fixture(autouse=True)
    async def _receiver(self):
        async with webhook_receiver(SECRET) as receiver:
            self.receiver = receiver
            self.notifiers: list[WebhookNotifier] = []
            yield
            for notifier in self.notifiers:
                await notifier.aclose()

    def make(self) -> WebhookNotifier:
        self.notifiers.append(WebhookNotifier(allow_private=True))  # the receiver is on loopback
        return self.notifiers[-1]

    def reachable(self, n: int = 0) -> str:
        return self.receiver.url(f"/hooks/owner{n}")

    def unreachable(self) -> str:
        return self.receiver.url("/status/410")  # Gone: the receiver was removed

    def received(self, notifier: WebhookNotifier, recipient: str) -> list[Notification]:
        path = recipient.removeprefix(self.receiver.base_url)
        return [notification_from(event, recipient) for event in self.receiver.events_at(path)]
