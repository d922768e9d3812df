"""Alerts end to end on the runner's roles (gateway, ledger, scheduler, alerts in one process, as
`meterline up`'s children run them): spend through /v1 crosses a user's 50 % rule, and the alert
arrives at a real SMTP server on loopback and at a webhook receiver that verifies its signature
and refuses a replayed copy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from domain.quota_policy import Scope
from domain.webhook_signature import HEADER
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, running_gateway, sim_config
from tests.support.smtp_server import smtp_server
from tests.support.webhook_receiver import webhook_receiver

ROLES = frozenset({"gateway", "ledger", "scheduler", "alerts"})
LIMIT_NANOS = 1_000_000  # $0.001


async def wait_for(condition, timeout_s: float = 15) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def spend_past_half(gw: RunningGateway, key: str) -> int:
    """Sends requests until the user's spend reaches 50 % of the limit (and not 80 %)."""
    sent = 0
    async with httpx.AsyncClient(base_url=gw.v1, headers={"authorization": f"Bearer {key}"}) as client:
        while gw.system.ledger.budget(Scope.USER, "zoe").period_spent * 2 < LIMIT_NANOS:
            reply = await client.post("/chat/completions", json={
                "model": "sim", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 200, reply.text
            sent += 1
            await asyncio.to_thread(gw.wait_ledger, sent)
    return sent


async def test_an_alert_reaches_a_real_smtp_server_and_a_verifying_webhook_receiver(tmp_path: Path) -> None:
    with Simulator(port=0) as sim, smtp_server() as smtp:
        async with webhook_receiver(secret="set-once-the-rule-exists") as receiver:
            settings = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_from": "alerts@example.com",
                        "smtp_starttls": False, "webhook_allow_private": True}
            with running_gateway(tmp_path, sim_config(sim.base_url), roles=ROLES, **settings) as gw:
                async with httpx.AsyncClient(base_url=gw.url, headers={
                        "authorization": "Bearer test-admin-token-0123456789abcdef"}) as admin:
                    (await admin.post("/api/admin/users", json={"user_id": "zoe", "email": "zoe@example.com"})
                     ).raise_for_status()
                    key = (await admin.post("/api/keys", json={"name": "k", "models": ["sim"],
                                                               "user_id": "zoe"})).json()
                    budget = {"limit_usd": "0.001", "mode": "soft"}
                    (await admin.put("/api/admin/budgets/user/zoe", json=budget)).raise_for_status()
                    rule = (await admin.post("/api/admin/alerts", json={
                        "name": "zoe half way", "scope": "user", "scope_id": "zoe",
                        "trigger": {"budget_percent": 50}, "channels": ["email", "webhook"],
                        "recipients": ["@owner"], "webhook_url": receiver.url("/hooks/zoe")})).json()
                    receiver.secret = rule["webhook_secret"]
                    await spend_past_half(gw, key["key"])
                    await wait_for(lambda: smtp.messages_to("zoe@example.com") and receiver.taken)
                    await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
                    deliveries = (await admin.get("/api/admin/alerts/deliveries")).json()["data"]

    [mail] = smtp.messages_to("zoe@example.com")
    assert mail["Subject"] == "[Meterline] 50% of the budget reached for user zoe"
    assert "What happens next: nothing is blocked" in mail.get_body(("plain",)).get_content()
    [hook] = receiver.taken
    assert hook.event["subject"] == mail["Subject"] and hook.event["data"]["rule_id"] == rule["id"]
    assert hook.event["data"]["limit_usd"] == "0.001" and receiver.refused == []
    mine = [d for d in deliveries if d["rule_id"] == rule["id"]]
    assert {(d["channel"], d["state"]) for d in mine} == {("email", "sent"), ("webhook", "sent")}

    # a receiver refuses a replayed copy and a changed body
    async with webhook_receiver(secret=rule["webhook_secret"]) as again, httpx.AsyncClient() as client:
        headers = {HEADER: hook.headers[HEADER], "webhook-id": hook.headers["webhook-id"],
                   "content-type": "application/json"}
        first = await client.post(again.url("/hooks/zoe"), content=hook.raw, headers=headers)
        replayed = await client.post(again.url("/hooks/zoe"), content=hook.raw, headers=headers)
        forged = await client.post(again.url("/hooks/zoe"), content=hook.raw.replace(b"zoe", b"zed"),
                                   headers=headers)
    assert first.status_code == 204 and replayed.text == "already received" and forged.status_code == 400


async def test_a_failing_smtp_server_is_retried_then_dead_lettered_while_metering_goes_on(
        tmp_path: Path) -> None:
    with Simulator(port=0) as sim, smtp_server(deferred=frozenset({"zoe@example.com"})) as smtp:
        settings = {"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_from": "alerts@example.com",
                    "smtp_starttls": False, "alerts_max_attempts": 2}
        with running_gateway(tmp_path, sim_config(sim.base_url), roles=ROLES, **settings) as gw:
            async with httpx.AsyncClient(base_url=gw.url, headers={
                    "authorization": "Bearer test-admin-token-0123456789abcdef"}) as admin:
                (await admin.post("/api/admin/users", json={"user_id": "zoe", "email": "zoe@example.com"})
                 ).raise_for_status()
                key = (await admin.post("/api/keys", json={"name": "k", "models": ["sim"], "user_id": "zoe"})
                       ).json()
                budget = {"limit_usd": "0.001", "mode": "soft"}
                (await admin.put("/api/admin/budgets/user/zoe", json=budget)).raise_for_status()
                rule = (await admin.post("/api/admin/alerts", json={
                    "name": "zoe half way", "scope": "user", "scope_id": "zoe",
                    "trigger": {"budget_percent": 50}, "channels": ["email"],
                    "recipients": ["@owner"]})).json()
                sent = await spend_past_half(gw, key["key"])

                async def states() -> list[dict]:
                    page = (await admin.get("/api/admin/alerts/deliveries")).json()["data"]
                    return [d for d in page if d["rule_id"] == rule["id"]]
                deadline = time.monotonic() + 20
                while not (found := await states()) or found[0]["state"] != "dead_lettered":
                    assert time.monotonic() < deadline, found
                    await asyncio.sleep(0.1)
                async with httpx.AsyncClient(base_url=gw.v1, headers={"authorization": f"Bearer {key['key']}"}
                                             ) as client:
                    reply = await client.post("/chat/completions", json={
                        "model": "sim", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
                assert reply.status_code == 200
                await asyncio.to_thread(gw.wait_ledger, sent + 1)
    [delivery] = found
    assert delivery["attempts"] == 2 and "450" in delivery["last_error"]
    assert smtp.messages_to("zoe@example.com") == []
