"""The alerts API over HTTP on a real gateway: the seed's exercise (an owner's 50 % rule for a user,
received once through the real /v1 path), admins' rules and deliveries, users' own rules kept to
what is theirs, notices acknowledged only by their user, and bad input answered with a 4xx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.notify.in_app import InAppNotifier
from adapters.notify.memory import InMemoryNotifier
from domain.alerts.signing import webhook_secret
from domain.quota_policy import Scope
from infra.alerts_wiring import build_alerts_worker
from testkit.simulator.server import Simulator
from tests.support.alerts import api_user as user
from tests.support.alerts import settle
from tests.support.gateway import KEY_SECRET, RunningGateway, openai_error, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger", "scheduler"})  # the test drives its own alerts worker


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gw(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    data_dir = tmp_path_factory.mktemp("gw-alerts")
    with running_gateway(data_dir, sim_config(sim.base_url), roles=ROLES) as gateway:
        yield gateway


def rule(**fields) -> dict:
    return {"name": "half way", "scope": "user", "trigger": {"budget_percent": 50},
            "channels": ["email", "in_app"], "recipients": ["@owner"], **fields}


def test_an_owner_adds_a_rule_for_a_user_at_50_percent_and_the_user_receives_it_once(
        gw: RunningGateway) -> None:
    carol = user(gw, "carol", "carol@example.com")
    key = gw.issue_key("carol", ["sim"])
    with gw.client() as admin:
        admin.put("/api/admin/budgets/user/carol",
                  json={"limit_usd": "0.001", "mode": "soft"}).raise_for_status()
        created = admin.post("/api/admin/alerts", json=rule(scope_id="carol"))
    assert created.status_code == 201, created.text
    email = InMemoryNotifier()
    worker = build_alerts_worker(gw.system, {"email": email, "webhook": InMemoryNotifier(),
                                             "in_app": InAppNotifier(gw.system.alerts)})
    budget = gw.system.ledger
    sent = 0
    bearer = {"authorization": f"Bearer {key['key']}"}
    with httpx.Client(base_url=gw.v1, headers=bearer, timeout=30) as client:
        while sent < 30:
            reply = client.post("/chat/completions", json={"model": "sim", "max_tokens": 64,
                                                           "messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 200, reply.text
            sent += 1
            gw.wait_ledger(sent)
            asyncio.run(settle(worker))
            spent = budget.budget(Scope.USER, "carol").period_spent
            if spent * 2 < 1_000_000:
                assert email.inbox("carol@example.com") == [], "fired before 50 % was reached"
            elif spent * 2 >= 1_000_000 * 1.5:  # well past 50 %: later spend fires nothing more
                break
    [mail] = email.inbox("carol@example.com")
    assert mail.subject == "[Meterline] 50% of the budget reached for user carol"
    assert "nothing is blocked" in mail.body["text"] and "Budget: $0.001 (soft)" in mail.body["text"]
    notices = carol.get("/api/me/notices").json()
    assert notices["unread"] == 1 and notices["data"][0]["subject"] == mail.subject
    notice_id = notices["data"][0]["id"]
    assert carol.post(f"/api/me/notices/{notice_id}/ack").status_code == 200
    assert carol.get("/api/me/notices").json()["unread"] == 0
    dave = user(gw, "dave")
    openai_error(dave.post(f"/api/me/notices/{notice_id}/ack"), 404, "notice_not_found")
    with gw.client() as admin:
        page = admin.get("/api/admin/alerts/deliveries", params={"limit": 500}).json()
    mine = [d for d in page["data"] if d["rule_id"] == created.json()["id"]]
    assert sorted(d["channel"] for d in mine) == ["email", "in_app"]
    assert {d["state"] for d in mine} == {"sent"} and {d["attempts"] for d in mine} == {1}


def test_a_webhook_rules_secret_is_shown_once_and_rotating_it_shows_a_new_one(gw: RunningGateway) -> None:
    with gw.client() as admin:
        created = admin.post("/api/admin/alerts", json={
            "name": "ops", "scope": "global", "trigger": {"spend_usd": "100"}, "channels": ["webhook"],
            "webhook_url": "https://hooks.example.com/meterline"}).json()
        secret = created["webhook_secret"]
        assert secret == webhook_secret(KEY_SECRET.encode(), created["id"], 1)
        shown = admin.get(f"/api/admin/alerts/{created['id']}").json()
        assert "webhook_secret" not in shown and shown["trigger"] == {"spend_usd": "100.00"}
        body = {k: created[k] for k in ("name", "scope", "trigger", "channels", "webhook_url")}
        rotated = admin.put(f"/api/admin/alerts/{created['id']}",
                            json={**body, "rotate_webhook_secret": True})
        assert rotated.status_code == 200 and rotated.json()["webhook_secret"] not in (None, secret)
        disabled = admin.put(f"/api/admin/alerts/{created['id']}", json={**body, "enabled": False}).json()
        assert disabled["enabled"] is False and "webhook_secret" not in disabled
        assert admin.delete(f"/api/admin/alerts/{created['id']}").status_code == 200
        openai_error(admin.get(f"/api/admin/alerts/{created['id']}"), 404, "alert_rule_not_found")
        assert created["id"] not in {r["id"] for r in admin.get("/api/admin/alerts").json()["data"]}
    def recorded() -> list[str]:
        return [e.entry.action for e in gw.system.audit.records()
                if getattr(e, "entry", None) and e.entry.target == f"alert-rule:{created['id']}"]

    deadline = time.monotonic() + 10
    while len(recorded()) < 4 and time.monotonic() < deadline:  # the recorder follows the alerts' log
        time.sleep(0.05)
    time.sleep(0.5)  # anything recorded twice would be there now (the poll waited 10 s for a fifth)
    assert recorded() == ["AlertRuleCreated", "AlertWebhookSecretRotated", "AlertRuleDisabled",
                          "AlertRuleDeleted"]


def test_users_cannot_read_change_or_delete_others_rules(gw: RunningGateway) -> None:
    erin, frank = user(gw, "erin", "erin@example.com"), user(gw, "frank")
    mine = erin.post("/api/alerts", json=rule(scope_id="erin"))
    assert mine.status_code == 201, mine.text
    rule_id = mine.json()["id"]
    assert [r["id"] for r in erin.get("/api/alerts").json()["data"]] == [rule_id]
    assert frank.get("/api/alerts").json()["data"] == []
    for target in (rule_id, "not-a-uuid", "0" * 5000, "00000000-0000-0000-0000-000000000000"):
        openai_error(frank.get(f"/api/alerts/{target}"), 404)
        openai_error(frank.put(f"/api/alerts/{target}", json=rule(scope_id="frank")), 404)
        openai_error(frank.delete(f"/api/alerts/{target}"), 404)
    with gw.client() as admin:  # an admin's rule is not a user's either
        admins = admin.post("/api/admin/alerts", json=rule(scope_id="erin")).json()["id"]
    openai_error(erin.get(f"/api/alerts/{admins}"), 404)
    openai_error(erin.delete(f"/api/alerts/{admins}"), 404)
    openai_error(frank.get("/api/admin/alerts"), 403)
    assert erin.get(f"/api/alerts/{rule_id}").json()["owner"] == "erin"


@pytest.mark.parametrize(("body", "param"), [
    (rule(scope_id="frank"), "scope_id"),
    (rule(scope="global"), "scope"),
    (rule(scope="team", scope_id="team-a"), "scope"),
    (rule(scope_id="gina", recipients=["someone@else.com"]), "recipients"),
    (rule(scope_id="gina", recipients=["@admins"]), "recipients"),
    (rule(scope_id="gina", channels=["webhook"], webhook_url="http://127.0.0.1:8080/x"), "webhook_url"),
    (rule(scope_id="gina", channels=["webhook"], webhook_url="http://10.1.2.3/x"), "webhook_url"),
    (rule(scope_id="gina", channels=["webhook"], webhook_url="http://localhost/x"), "webhook_url"),
    (rule(scope_id="gina", channels=["webhook"], webhook_url="http://[::1]/x"), "webhook_url"),
    (rule(scope_id="gina", channels=["webhook"], webhook_url="http://169.254.169.254/latest"), "webhook_url"),
    (rule(scope_id="gina", channels=["webhook"]), "webhook_url"),
    (rule(scope="key", scope_id="00000000-0000-0000-0000-000000000000"), "scope_id"),
])
def test_a_users_rule_watches_only_their_spend_and_tells_only_them(gw: RunningGateway, body: dict,
                                                                  param: str) -> None:
    gina = user(gw, "gina", "gina@example.com")
    error = openai_error(gina.post("/api/alerts", json=body), 400)
    assert error["param"] == param, error


def test_a_user_may_watch_their_own_key_with_their_own_address(gw: RunningGateway) -> None:
    hana = user(gw, "hana", "hana@example.com")
    key = gw.issue_key("hana", ["sim"])
    made = hana.post("/api/alerts", json=rule(scope="key", scope_id=key["id"], trigger={"spend_usd": "0.5"},
                                              recipients=["hana@example.com"]))
    assert made.status_code == 201, made.text
    user(gw, "jon")
    other = gw.issue_key("jon", ["sim"])
    openai_error(hana.post("/api/alerts", json=rule(scope="key", scope_id=other["id"])), 400)


@pytest.mark.parametrize("body", [
    {},
    {"name": "x" * 10_000, "scope": "user", "scope_id": "ivan", "trigger": {"budget_percent": 50},
     "channels": ["email"], "recipients": ["@owner"]},
    rule(scope_id="ivan", trigger={"budget_percent": "50"}),
    rule(scope_id="ivan", trigger={"budget_percent": 0}),
    rule(scope_id="ivan", trigger={"budget_percent": 1001}),
    rule(scope_id="ivan", trigger={"budget_percent": True}),
    rule(scope_id="ivan", trigger={"budget_percent": 50.5}),
    rule(scope_id="ivan", trigger={"spend_usd": 12.5}),
    rule(scope_id="ivan", trigger={"spend_usd": "0.0000000001"}),
    rule(scope_id="ivan", trigger={"spend_usd": "1e400"}),
    rule(scope_id="ivan", trigger={"spend_usd": "-3"}),
    rule(scope_id="ivan", trigger={"anomaly": "growth"}),
    rule(scope_id="ivan", trigger={"budget_percent": 50, "anomaly": "spike"}),
    rule(scope_id="ivan", trigger=[{"budget_percent": 50}]),
    rule(scope_id="ivan", trigger={"budget_percent": {"a": {"b": {"c": [1, [2, [3]]]}}}}),
    rule(scope_id="ivan", channels=["sms"]),
    rule(scope_id="ivan", channels=["email", "email"]),
    rule(scope_id="ivan", channels=[]),
    rule(scope_id="ivan", recipients=["@owner"] * 51),
    rule(scope_id="ivan", extra="field"),
    rule(scope_id="ivan", webhook_url="ftp://example.com/x"),
    rule(scope_id="ivan", webhook_url="https://user:pw@example.com/x"),
    rule(scope_id="bad/id"),
])
def test_malformed_rules_get_a_4xx_that_says_what_is_wrong(gw: RunningGateway, body: dict) -> None:
    ivan = user(gw, "ivan", "ivan@example.com")
    for client, path in ((ivan, "/api/alerts"), (gw.client(), "/api/admin/alerts")):
        response = client.post(path, json=body)
        assert response.status_code in (400, 413, 422), response.text
        openai_error(response, response.status_code)


def test_the_admin_token_is_not_a_user_for_own_rules_and_notices(gw: RunningGateway) -> None:
    with gw.client() as admin:
        openai_error(admin.get("/api/alerts"), 400, "user_required")
        openai_error(admin.get("/api/me/notices"), 400, "user_required")
        openai_error(admin.get("/api/admin/alerts/deliveries", params={"state": "lost"}), 400)


def test_odd_notice_ids_and_delivery_pages_get_a_4xx(gw: RunningGateway) -> None:
    kim = user(gw, "kim")
    for odd in ("x" * 5000, "%00", "..%2F..%2Fadmin", "ünïcode", "00000000-0000-0000-0000-000000000000"):
        openai_error(kim.post(f"/api/me/notices/{odd}/ack"), 404)
    assert kim.get("/api/me/notices").json() == {"object": "list", "unread": 0, "data": []}
    with gw.client() as admin:
        for params in ({"after": -1}, {"limit": 0}, {"limit": 100_000}, {"after": "abc"}, {"after": 2**70}):
            openai_error(admin.get("/api/admin/alerts/deliveries", params=params), 400)
    openai_error(kim.get("/api/admin/alerts/deliveries"), 403)
