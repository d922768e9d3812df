"""The alerts worker on every event store: rules fire once per rule, scope and period across
restarts, replayed logs and racing workers; failing and slow channels hold nothing else up."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from adapters.clock import FixedClock
from adapters.notify.memory import InMemoryNotifier
from domain.alerts.trigger import DEAD, SENT
from domain.quota_policy import BudgetPolicy, Mode, Scope
from domain.services.alerts import Alerts
from tests.support.alerts import (
    AlertsRig,
    CountingNotifier,
    FailingNotifier,
    SlowNotifier,
    seed_users,
    settle,
    user_rule,
)
from tests.support.stores import DOLLAR, metered
from tests.support.stores import clock as clock  # fixtures, used by name


@pytest.fixture
def rig(store_env: dict[str, str], clock: FixedClock):
    opened = AlertsRig.open(store_env, clock)
    seed_users(opened.registry)
    yield opened
    opened.close()


def spend(rig: AlertsRig, n: int, cost: int, user: str = "ada", key: str = "k-ada") -> None:
    rig.ledger.record_usage([metered(n, at=rig.clock.now(), cost=cost, user=user, key=key, team="t1")])


def deliveries(alerts: Alerts) -> list[Any]:
    return alerts.deliveries(limit=1000)[0]


async def test_a_users_rule_at_50_percent_reaches_the_user_once_when_spend_crosses_it(rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR, mode=Mode.HARD))
    rig.alerts.create_rule(user_rule("half way", "ada", {"budget_percent": 50}), owner="ada")
    email = InMemoryNotifier()
    worker = rig.worker({"email": email})
    spend(rig, 1, 4 * DOLLAR)
    await settle(worker)
    assert email.inbox("ada@example.com") == []
    spend(rig, 2, DOLLAR)  # 5 of 10: 50 % reached
    spend(rig, 3, DOLLAR)
    await settle(worker)
    [mail] = email.inbox("ada@example.com")
    assert "50% of the budget reached for user ada" in mail.subject
    assert "Spent this period: $5.00" in mail.body["text"] or "Spent this period: $6.00" in mail.body["text"]
    assert "requests are refused (HTTP 429)" in mail.body["text"]
    assert mail.body["type"] == "meterline.alert.triggered"
    assert mail.body["data"]["limit_usd"] == "10.00"
    [notice] = rig.alerts.notices("ada")
    assert notice["subject"] == mail.subject and notice["acknowledged_at"] is None
    assert rig.alerts.notices("bob") == []


async def test_any_percent_and_absolute_spend_fire_and_spend_rules_need_no_budget(rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=100 * DOLLAR, mode=Mode.SOFT))
    for percent in (7, 33, 250):
        rig.alerts.create_rule(user_rule(f"{percent}%", "ada", {"budget_percent": percent}, ("email",)))
    rig.alerts.create_rule(user_rule("over $12.345678901", "bob", {"spend_usd": "12.345678901"}, ("email",)))
    email = InMemoryNotifier()
    worker = rig.worker({"email": email})
    spend(rig, 1, 40 * DOLLAR)  # 40 %: 7 and 33 fire, 250 does not
    spend(rig, 2, 12_345_678_900, user="bob", key="k-bob")  # one nano-dollar short, and bob has no budget
    await settle(worker)
    assert sorted(m.subject for m in email.inbox("ada@example.com")) == [
        "[Meterline] 33% of the budget reached for user ada",
        "[Meterline] 7% of the budget reached for user ada"]
    assert email.inbox("bob@example.com") == []
    spend(rig, 3, 1, user="bob", key="k-bob")
    spend(rig, 4, 210 * DOLLAR)
    await settle(worker)
    [bob] = email.inbox("bob@example.com")
    assert bob.subject == "[Meterline] spend reached $12.345678901 for user bob"
    assert bob.body["data"]["spent_usd"] == "12.345678901" and bob.body["data"]["limit_usd"] is None
    assert "no budget is set" in bob.body["text"]
    assert len(email.inbox("ada@example.com")) == 3


async def test_one_alert_per_rule_scope_and_period_across_restarts_replays_and_racing_workers(
        rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    rig.alerts.create_rule(user_rule("half", "ada", {"budget_percent": 50}, ("email",)))
    email = CountingNotifier()
    for n in range(1, 9):  # 8 pages' worth of spend past 50 %
        spend(rig, n, DOLLAR)
    first, second = rig.worker({"email": email}), rig.worker({"email": email})
    await asyncio.gather(settle(first), settle(second))  # two workers race on the same log
    restarted = rig.worker({"email": email})  # a restart: new app, the stored position
    await settle(restarted)
    replay = rig.worker({"email": email})
    replay.follower.ledger = Renamed(rig.ledger, "ledger-replayed")  # the same log again, from 1
    await settle(replay)
    assert replay.follower.alerts.position("ledger-replayed") > 0
    assert list(email.by_id().values()) == [1]
    spend(rig, 9, DOLLAR)
    await settle(restarted)
    assert len(email.calls) == 1
    rig.clock.advance(timedelta(days=40))  # a new month: the rule fires again, once
    spend(rig, 10, 6 * DOLLAR)
    await asyncio.gather(settle(first), settle(restarted))
    assert len(email.calls) == 2 and list(email.by_id().values()) == [1, 1]


@dataclass
class Renamed:
    """A log followed under another name: its position starts again at the beginning."""

    app: Any
    name: str

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.app, attribute)


async def test_a_channel_that_always_fails_is_retried_then_dead_lettered_and_metering_goes_on(
        rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    rig.alerts.create_rule(user_rule("half", "ada", {"budget_percent": 50}, ("email", "in_app")))
    failing = FailingNotifier()
    worker = rig.worker({"email": failing})
    spend(rig, 1, 6 * DOLLAR)
    await settle(worker)
    by_channel = {d.channel: d for d in deliveries(rig.alerts)}
    assert failing.calls == 3  # FAST_RETRIES: three attempts
    assert by_channel["email"].status == DEAD and by_channel["email"].attempts == 3
    assert "connection refused" in by_channel["email"].last_error
    assert by_channel["in_app"].status == SENT and len(rig.alerts.notices("ada")) == 1
    spend(rig, 2, DOLLAR)  # the ledger records on: alerts never stand in its way
    assert rig.ledger.budget(Scope.USER, "ada").period_spent == 7 * DOLLAR


async def test_a_permanent_failure_is_dead_lettered_at_once(rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    rig.alerts.create_rule(user_rule("half", "ada", {"budget_percent": 50}, ("email",)))
    failing = FailingNotifier(permanent=True)
    worker = rig.worker({"email": failing})
    spend(rig, 1, 6 * DOLLAR)
    await settle(worker)
    [delivery] = deliveries(rig.alerts)
    assert failing.calls == 1 and delivery.status == DEAD


async def test_a_slow_channel_does_not_delay_another(rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    rig.alerts.create_rule(user_rule("half", "ada", {"budget_percent": 50}, ("email", "webhook"),
                                     webhook_url="https://hooks.example.com/a"))
    slow, fast = SlowNotifier(3.0), CountingNotifier()
    worker = rig.worker({"email": slow, "webhook": fast}, timeout_s=1.0)
    spend(rig, 1, 6 * DOLLAR)
    started = time.monotonic()
    await worker.run_once()
    while not fast.calls and time.monotonic() - started < 2:
        await asyncio.sleep(0.01)
    assert fast.calls and time.monotonic() - started < 0.9  # the webhook did not wait for the e-mail
    assert fast.calls[0].signing_secret.startswith("whsec_")
    await worker.drain()
    email = next(d for d in deliveries(rig.alerts) if d.channel == "email")
    assert email.attempts == 1 and "did not answer within 1 s" in (email.last_error or "")


async def test_default_rules_are_installed_once_and_tell_the_owner_and_the_admins(rig: AlertsRig) -> None:
    workers = [rig.worker(install=True), rig.worker(install=True)]
    assert len(rig.alerts.rules()) == 6
    email = InMemoryNotifier()
    hook = CountingNotifier()
    worker = rig.worker({"email": email, "webhook": hook}, admin_webhook_url="https://ops.example.com/hook")
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    spend(rig, 1, 10 * DOLLAR)
    await settle(worker)
    subjects = sorted(m.subject for m in email.inbox("ada@example.com"))
    assert subjects == [f"[Meterline] {p}% of the budget reached for user ada" for p in (100, 80, 95)]
    assert [m.subject for m in email.inbox("root@example.com")] == [
        "[Meterline] 100% of the budget reached for user ada"]
    assert [n.recipient for n in hook.calls] == ["https://ops.example.com/hook"]
    assert {n["subject"] for n in rig.alerts.notices("ada")} == {subjects[0], subjects[2]}
    assert len(workers) == 2


async def test_the_100_percent_default_skips_its_webhook_when_no_admin_webhook_is_configured(
        rig: AlertsRig, caplog: pytest.LogCaptureFixture) -> None:
    worker = rig.worker(install=True)
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=DOLLAR))
    spend(rig, 1, DOLLAR)
    await settle(worker)
    assert "webhook" not in {d.channel for d in deliveries(rig.alerts)}
    assert "METERLINE_ALERTS_WEBHOOK_URL is not set" in caplog.text


async def test_an_anomaly_rule_fires_once_per_incident_for_the_users_keys_too(rig: AlertsRig) -> None:
    from domain.anomaly.incident import Incident, incident_id_for
    from domain.services.anomalies import Anomalies
    anomalies = Anomalies(env=dict(rig.ledger.env))
    rig.opened.append(anomalies)
    rig.alerts.create_rule(user_rule("ada's spikes", "ada", {"anomaly": "spike"}, ("email",)))
    rig.alerts.create_rule(user_rule("ada at night", "ada", {"anomaly": "night"}, ("email",)))
    email = CountingNotifier()
    worker = rig.worker({"email": email}, anomalies=anomalies)

    def detect(kind: str, scope: str, scope_id: str, hours: int) -> None:
        at = rig.clock.now() + timedelta(hours=hours)
        anomalies.save(Incident(incident_id=str(incident_id_for(kind, scope, scope_id, at)), kind=kind,
                                scope=scope, scope_id=scope_id,
                                user_id=scope_id if scope == "user" else "ada",
                                figures={"factor": "3.4", "baseline_usd": "0.10"}, at=at))
    detect("spike", "key", "k-ada", 0)
    detect("spike", "user", "bob", 0)  # bob's: no rule watches it
    detect("error_rate", "user", "ada", 0)  # no error-rate rule
    await settle(worker)
    await settle(rig.worker({"email": email}, anomalies=anomalies))  # a restart reads nothing again
    [mail] = email.calls
    assert mail.subject == "[Meterline] anomaly: spike for key k-ada"
    assert "factor: 3.4" in mail.body["text"] and mail.body["data"]["kind"] == "spike"
    detect("spike", "key", "k-ada", 5)  # a new incident: a new alert
    await settle(worker)
    assert len(email.calls) == 2


def test_a_budget_read_forward_from_a_kept_copy_equals_the_budget_loaded_at_that_version(
        rig: AlertsRig) -> None:
    from domain.budget import Budget
    from infra.workers.budget_reader import BudgetReader
    from tests.support.stores import state
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    reader = BudgetReader(rig.ledger)
    budget_id = Budget.id_for(Scope.USER, "ada")
    for n in range(1, 30):
        spend(rig, n, DOLLAR // 3)
        if n == 15:
            rig.clock.advance(timedelta(days=35))  # a rollover among them
        version = rig.ledger.budget(Scope.USER, "ada").version
        if n % 4:
            assert state(reader.at(budget_id, version)) == state(
                rig.ledger.repository.get(budget_id, version=version))
    assert reader.loads == 1 and reader.forwards > 10


async def test_deleting_a_rule_stops_its_retries(rig: AlertsRig) -> None:
    from domain.alerts.retry import RetrySchedule
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    rule = rig.alerts.create_rule(user_rule("half", "ada", {"budget_percent": 50}, ("email",)))
    failing = FailingNotifier()
    worker = rig.worker({"email": failing}, schedule=RetrySchedule(max_attempts=10, base_s=3600))
    spend(rig, 1, 6 * DOLLAR)
    await settle(worker)
    assert failing.calls == 1 and deliveries(rig.alerts)[0].status == "pending"
    rig.alerts.delete_rule(rule.id)
    rig.clock.advance(timedelta(hours=3))
    await settle(worker)
    [delivery] = deliveries(rig.alerts)
    assert failing.calls == 1 and delivery.status == DEAD and "deleted" in delivery.last_error


async def test_a_delivery_claimed_by_a_worker_that_died_is_sent_by_another_once_its_lease_ends(
        rig: AlertsRig) -> None:
    rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR))
    rig.alerts.create_rule(user_rule("half", "ada", {"budget_percent": 50}, ("email",)))
    email = CountingNotifier()
    dead = rig.worker({"email": email})
    spend(rig, 1, 6 * DOLLAR)
    await asyncio.to_thread(dead.follow_once)  # recorded the trigger, then claimed it and died
    [delivery] = deliveries(rig.alerts)
    assert rig.alerts.claim(delivery.id, timedelta(seconds=40)) is not None
    survivor = rig.worker({"email": email})
    await settle(survivor)
    assert email.calls == []  # the lease holds it
    rig.clock.advance(timedelta(seconds=41))
    await settle(survivor)
    [delivery] = deliveries(rig.alerts)
    assert len(email.calls) == 1 and delivery.status == SENT and delivery.attempts == 2
