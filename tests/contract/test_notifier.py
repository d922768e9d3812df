"""The notifier port's contract: every channel adapter passes it (real channels join with alerts)."""

from __future__ import annotations

import asyncio

import pytest

from adapters.notify.memory import InMemoryNotifier
from domain.ports.notifier import Notification, NotificationFailed


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
        sent = Notification("n-1", to, "Budget at 80 %", {"spent_usd": "8.00", "limit_usd": "10.00"})
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_text_outside_ascii_arrives_unchanged(self) -> None:
        notifier, to = self.make(), self.reachable()
        sent = Notification("n-2", to, "Équipe « Recherche » — 95 %", {"team": "Forschung & Entwicklung ✓"})
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_one_notification_id_is_delivered_once(self) -> None:
        notifier, to = self.make(), self.reachable()
        sent = Notification("n-3", to, "Budget exceeded", {})
        await asyncio.gather(*(notifier.notify(sent) for _ in range(5)))
        await notifier.notify(sent)
        assert self.received(notifier, to) == [sent]

    async def test_concurrent_notifications_to_many_recipients_all_arrive_in_their_inbox(self) -> None:
        notifier = self.make()
        sent = [Notification(f"c-{n}", self.reachable(n % 3), f"alert {n}", {"n": n}) for n in range(30)]
        await asyncio.gather(*(notifier.notify(s) for s in sent))
        for r in range(3):
            got = self.received(notifier, self.reachable(r))
            assert sorted(got, key=lambda s: s.body["n"]) == [s for s in sent if s.body["n"] % 3 == r]

    async def test_an_unreachable_recipient_fails_permanently_and_others_still_get_theirs(self) -> None:
        notifier, to = self.make(), self.reachable()
        with pytest.raises(NotificationFailed) as failed:
            await notifier.notify(Notification("u-1", self.unreachable(), "lost", {}))
        assert failed.value.permanent
        await notifier.notify(Notification("u-2", to, "kept", {}))
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
