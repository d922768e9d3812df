"""An alert crossing a user's 50 % budget reaches a real SMTP server and a real webhook receiver on
loopback through the channels `infra.notifiers` builds; the receiver verifies the signature with
the rule's secret (the one creating the rule shows) and drops a replay.

A user's own rule never sends its webhook to a private address, even where the deployment lets
admins' rules do so (METERLINE_WEBHOOK_ALLOW_PRIVATE=1): its host was public when the rule was
set, and a name that resolves privately by the time of sending (DNS rebinding) must not reach an
internal service (found by the alerts attack pass)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env
from adapters.notify.email_message import read_notification
from domain.alerts.signing import webhook_secret
from domain.quota_policy import BudgetPolicy, Mode, Scope
from infra.config.env_settings import load_settings
from infra.notifiers import build_channels
from infra.workers.alerts_worker import USERS_WEBHOOK
from tests.support.alerts import AlertsRig, seed_users, settle, user_rule
from tests.support.config import clean_environment as clean_environment  # autouse fixture
from tests.support.smtp_server import smtp_server
from tests.support.stores import DOLLAR, SERVER_SECRET, metered
from tests.support.stores import clock as clock  # fixture, used by name
from tests.support.webhook_receiver import webhook_receiver


@pytest.fixture
def rig(clock: FixedClock) -> Iterator[AlertsRig]:
    opened = AlertsRig.open(memory_env(f"alerts-{uuid.uuid4().hex}"), clock)
    seed_users(opened.registry)
    yield opened
    opened.close()


async def test_a_50_percent_alert_arrives_by_smtp_and_as_a_verified_webhook_once(
        rig: AlertsRig, monkeypatch: pytest.MonkeyPatch) -> None:
    rule_id = uuid.uuid4()
    secret = webhook_secret(SERVER_SECRET, rule_id, 1)  # what creating the rule shows, once
    with smtp_server() as mail:
        async with webhook_receiver(secret) as hooks:
            settings = {"SMTP_HOST": mail.host, "SMTP_PORT": str(mail.port), "SMTP_STARTTLS": "0",
                        "SMTP_FROM": "alerts@meterline.example", "WEBHOOK_ALLOW_PRIVATE": "1"}
            for name, value in settings.items():
                monkeypatch.setenv(f"METERLINE_{name}", value)
            rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR, mode=Mode.HARD))
            rule = user_rule("half way", "ada", {"budget_percent": 50}, ("email", "webhook"),
                             webhook_url=hooks.url("/hooks/ada"))
            rig.alerts.create_rule(rule, owner="ada", rule_id=rule_id)
            channels = build_channels(load_settings())
            # The receiver is on loopback, which a user's own rule never reaches in a deployment
            # (the last test here); this test is about the SMTP and webhook exchange.
            channels[USERS_WEBHOOK] = channels["webhook"]
            worker = rig.worker(channels)
            rig.ledger.record_usage([metered(1, at=rig.clock.now(), cost=6 * DOLLAR, user="ada", key="k-ada",
                                             team="t1")])
            await settle(worker)
            await worker.aclose()
            [message] = mail.messages_to("ada@example.com")
            [event] = hooks.events_at("/hooks/ada")
            [delivery] = hooks.taken
            async with httpx.AsyncClient() as client:  # the same request again, as an attacker would
                await client.post(hooks.url("/hooks/ada"), content=delivery.raw, headers=delivery.headers)
    sent = read_notification(message)
    assert "50% of the budget reached for user ada" in sent.subject
    assert sent.body["type"] == event["type"] == "meterline.alert.triggered"
    assert event["data"] == sent.body["data"] and event["data"]["limit_usd"] == "10.00"
    assert event["subject"] == sent.subject and event["text"] == sent.body["text"]
    assert hooks.refused == [] and hooks.replays == [event["id"]] and len(hooks.taken) == 1


async def test_a_users_webhook_to_a_private_address_is_refused_where_admins_may_send_there(
        rig: AlertsRig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_WEBHOOK_ALLOW_PRIVATE", "1")
    admins_rule = uuid.uuid4()
    async with webhook_receiver(webhook_secret(SERVER_SECRET, admins_rule, 1)) as hooks:
        rig.ledger.set_budget(Scope.USER, "ada", BudgetPolicy(limit=10 * DOLLAR, mode=Mode.HARD))
        users = user_rule("ada's own", "ada", {"budget_percent": 50}, ("webhook",),
                          webhook_url=hooks.url("/hooks/ada"))
        admins = user_rule("the admins'", "ada", {"budget_percent": 50}, ("webhook",),
                           webhook_url=hooks.url("/hooks/admin"))
        rig.alerts.create_rule(users, owner="ada")
        rig.alerts.create_rule(admins, owner=None, rule_id=admins_rule)
        worker = rig.worker(build_channels(load_settings()))
        rig.ledger.record_usage([metered(1, at=rig.clock.now(), cost=6 * DOLLAR, user="ada", key="k-ada",
                                         team="t1")])
        await settle(worker)
        await worker.aclose()
        reached = {delivery.path for delivery in hooks.taken}
    deliveries, _ = rig.alerts.deliveries()
    refused = [d for d in deliveries if d.recipient.endswith("/hooks/ada")]
    assert reached == {"/hooks/admin"}
    assert refused and all(d.status != "sent" and "a user's rule sends only to public addresses"
                           in (d.last_error or "") for d in refused)
