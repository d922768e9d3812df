"""An alerts worker on a test's store: registry, ledger and alerts apps, channels that record."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from adapters.clock import FixedClock
from adapters.eventstore.environments import open_applications
from adapters.notify.in_app import InAppNotifier
from adapters.notify.memory import InMemoryNotifier
from domain.alerts.retry import RetrySchedule
from domain.alerts.rule_spec import rule_spec
from domain.ports.notifier import Notification, NotificationFailed, Notifier
from domain.principals import Role
from domain.services.alerts import Alerts
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from infra.workers.alert_recipients import RegistryDirectory
from infra.workers.alert_triggers import TriggerFollower
from infra.workers.alerts_worker import AlertsWorker
from tests.support.stores import SERVER_SECRET

FAST_RETRIES = RetrySchedule(max_attempts=3, base_s=0.0)  # due again at once, dead after 3 tries


class CountingNotifier:
    """Records every call, even a repeated id: what a real SMTP server would receive."""

    def __init__(self) -> None:
        self.calls: list[Notification] = []

    async def notify(self, notification: Notification) -> None:
        self.calls.append(notification)

    def by_id(self) -> Counter:
        return Counter(n.notification_id for n in self.calls)


class FailingNotifier:
    def __init__(self, permanent: bool = False) -> None:
        self.calls = 0
        self.permanent = permanent

    async def notify(self, notification: Notification) -> None:
        self.calls += 1
        raise NotificationFailed("connection refused by the mail server", permanent=self.permanent)


class SlowNotifier:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def notify(self, notification: Notification) -> None:
        self.calls += 1
        await asyncio.sleep(self.seconds)


@dataclass
class AlertsRig:
    registry: Registry
    ledger: Ledger
    alerts: Alerts
    clock: FixedClock
    opened: list[Any] = field(default_factory=list)

    @classmethod
    def open(cls, env: dict[str, str], clock: FixedClock) -> AlertsRig:
        registry, ledger = open_applications(env, clock, "UTC")
        alerts = Alerts.beside(ledger, clock)
        return cls(registry, ledger, alerts, clock, [registry, ledger, alerts])

    def worker(self, channels: dict[str, Notifier] | None = None, anomalies: Any = None,
               schedule: RetrySchedule = FAST_RETRIES, timeout_s: float = 5.0,
               admin_webhook_url: str | None = None, install: bool = False) -> AlertsWorker:
        alerts = Alerts.beside(self.ledger, self.clock)  # each worker its own app, as a process would
        self.opened.append(alerts)
        follower = TriggerFollower(alerts, self.ledger, RegistryDirectory(self.registry), anomalies,
                                   admin_webhook_url)
        chosen = {"email": InMemoryNotifier(), "webhook": InMemoryNotifier(),
                  "in_app": InAppNotifier(alerts), **(channels or {})}
        worker = AlertsWorker(alerts, follower, chosen, SERVER_SECRET, schedule, timeout_s=timeout_s)
        if install:
            worker.start()
        return worker

    def close(self) -> None:
        for app in self.opened:
            app.close()


def seed_users(registry: Registry) -> None:
    registry.create_team("t1", "Research")
    registry.register_user("ada", Role.USER, team_id="t1", email="ada@example.com")
    registry.register_user("bob", Role.USER, team_id="t1", email="bob@example.com")
    registry.register_user("root", Role.ADMIN, email="root@example.com")


def user_rule(name: str, user_id: str, trigger: dict[str, Any],
              channels: tuple[str, ...] = ("email", "in_app"), recipients: tuple[str, ...] = ("@owner",),
              **kwargs: Any):
    return rule_spec(name, "user", user_id, trigger, list(channels), list(recipients), **kwargs)


async def settle(worker: AlertsWorker, rounds: int = 20) -> None:
    """Runs the worker until it has nothing to read and nothing under way (or `rounds` run out)."""
    for _ in range(rounds):
        busy = await worker.run_once()
        await worker.drain()
        if not busy and not worker.inflight:
            await asyncio.sleep(0)
            if not await worker.run_once():
                await worker.drain()
                return


def api_user(gw: Any, user_id: str, email: str | None = None) -> httpx.Client:
    """A user registered through the admin API of a running gateway, and a client acting as them."""
    with gw.client() as admin:
        admin.post("/api/admin/users", json={"user_id": user_id, "email": email}).raise_for_status()
        token = admin.post(f"/api/admin/users/{user_id}/tokens").json()["token"]
    return gw.client(token)
