"""A user's own rule never sends its webhook to a private address, even where the deployment
lets admins' rules do so (METERLINE_WEBHOOK_ALLOW_PRIVATE=1): its host was public when the rule
was set, and a name that resolves privately by the time of sending (DNS rebinding) must not
reach an internal service. Found by the alerts attack pass; the channels are the real ones
`infra.notifiers` builds, the receiver a real one on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env
from domain.alerts.signing import webhook_secret
from domain.quota_policy import BudgetPolicy, Mode, Scope
from infra.config.env_settings import load_settings
from infra.notifiers import build_channels
from tests.support.alerts import AlertsRig, seed_users, settle, user_rule
from tests.support.config import clean_environment as clean_environment  # autouse fixture
from tests.support.stores import DOLLAR, SERVER_SECRET, metered
from tests.support.stores import clock as clock  # fixture, used by name
from tests.support.webhook_receiver import webhook_receiver


@pytest.fixture
def rig(clock: FixedClock) -> Iterator[AlertsRig]:
    opened = AlertsRig.open(memory_env(f"alerts-{uuid.uuid4().hex}"), clock)
    seed_users(opened.registry)
    yield opened
    opened.close()


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
