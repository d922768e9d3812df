"""An attacker's pass over the alerts, notices, anomalies and audit APIs on a real gateway, kept
as tests: each is something that got through before it was fixed.

* a user's webhook URL naming a private address in disguise (`127.1`, hex, octal, NAT64, 6to4,
  full-width digits) or a host name that resolves to one was accepted, to be refused only when
  the channel sent it;
* a user could create rules without end;
* a recipient with a NUL or the specials SMTP refuses, and a name with U+2028, were kept;
* a misspelt filter on the audit search, anomalies or deliveries was ignored, so the answer
  was everyone's entries read as one actor's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import httpx
import pytest

from domain.alerts.notices import NoticeBoard
from domain.alerts.rule_spec import MAX_OWN_RULES
from gateway.api import alerts_service
from testkit.simulator.server import Simulator
from tests.support.alerts import api_user as user
from tests.support.gateway import RunningGateway, openai_error, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger", "scheduler"})


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-alert-attacks"),
                                                   sim_config(sim.base_url), roles=ROLES) as gateway:
        yield gateway


def rule(user_id: str, **fields) -> dict:
    return {"name": "r", "scope": "user", "scope_id": user_id, "trigger": {"budget_percent": 80},
            "channels": ["email"], "recipients": ["@owner"], **fields}


def hook(user_id: str, url: str) -> dict:
    return rule(user_id, channels=["webhook"], recipients=[], webhook_url=url)


@pytest.fixture(scope="module")
def mallory(gw: RunningGateway) -> httpx.Client:
    return user(gw, "mallory", "mallory@example.com")


@pytest.mark.parametrize("url", [
    "http://127.1/", "http://127.0.1:8080/x", "http://0x7f.0.0.1/", "http://0177.0.0.1/",
    "http://169.254.43518/latest/meta-data/", "http://0251.0376.0251.0376/", "http://[64:ff9b::7f00:1]/",
    "http://[2002:a9fe:a9fe::]/", "http://[::ffff:a9fe:a9fe]/", "http://１２７.０.０.１/", "http://①②⑦.0.0.1/",
    "http://db.home.arpa/", "http://[fe80::1%25eth0]/"])
def test_a_users_webhook_to_a_private_address_in_disguise_is_refused_when_the_rule_is_set(
        gw: RunningGateway, mallory: httpx.Client, url: str) -> None:
    error = openai_error(mallory.post("/api/alerts", json=hook("mallory", url)), 400, "private_webhook")
    assert error["param"] == "webhook_url" and "public host" in error["message"]
    made = mallory.post("/api/alerts", json=hook("mallory", "https://hooks.example.com/a"))
    assert made.status_code == 201, made.text
    openai_error(mallory.put(f"/api/alerts/{made.json()['id']}", json=hook("mallory", url)), 400,
                 "private_webhook")
    assert mallory.delete(f"/api/alerts/{made.json()['id']}").status_code == 200


def test_a_users_webhook_host_that_resolves_to_a_private_address_is_refused(
        gw: RunningGateway, mallory: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"rebind.example.com": ["93.184.216.34", "10.0.0.7"], "good.example.com": ["93.184.216.34"]}

    async def resolver(host: str) -> list:
        if host not in answers:
            raise OSError("no such name")
        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(alerts_service, "resolved_addresses", resolver)
    error = openai_error(mallory.post("/api/alerts", json=hook("mallory", "https://rebind.example.com/h")),
                         400, "private_webhook")
    assert "resolves to 10.0.0.7" in error["message"]
    for url in ("https://good.example.com/h", "https://not-resolving.example.com/h"):  # the channel rechecks
        made = mallory.post("/api/alerts", json=hook("mallory", url))
        assert made.status_code == 201, made.text
        mallory.delete(f"/api/alerts/{made.json()['id']}").raise_for_status()
    with gw.client() as admin:  # admins may point at their own network (the channel decides at send)
        made = admin.post("/api/admin/alerts", json=hook("mallory", "https://rebind.example.com/h"))
        assert made.status_code == 201, made.text
        admin.delete(f"/api/admin/alerts/{made.json()['id']}").raise_for_status()


def test_a_user_keeps_at_most_the_cap_of_rules_even_in_a_burst_and_may_add_one_after_deleting_one(
        gw: RunningGateway) -> None:
    spammer = user(gw, "spammer")
    made = [spammer.post("/api/alerts", json=rule("spammer", name=f"r{i}"))
            for i in range(MAX_OWN_RULES - 10)]
    with ThreadPoolExecutor(8) as pool:  # the last ten places, raced for by twenty requests at once
        burst = list(pool.map(lambda i: spammer.post("/api/alerts", json=rule("spammer", name=f"b{i}")),
                              range(20)))
    assert {r.status_code for r in made} == {201}
    assert sorted(r.status_code for r in burst) == [201] * 10 + [409] * 10
    error = openai_error(spammer.post("/api/alerts", json=rule("spammer", name="one more")), 409,
                         "too_many_alert_rules")
    assert str(MAX_OWN_RULES) in error["message"] and "delete one" in error["message"]
    assert len(spammer.get("/api/alerts").json()["data"]) == MAX_OWN_RULES
    spammer.delete(f"/api/alerts/{made[0].json()['id']}").raise_for_status()
    assert spammer.post("/api/alerts", json=rule("spammer", name="in its place")).status_code == 201
    with gw.client() as admin:  # the cap is a user's; admins' rules do not count toward it
        assert admin.post("/api/admin/alerts", json=rule("spammer")).status_code == 201
    assert MAX_OWN_RULES == 100


@pytest.mark.parametrize(("fields", "param"), [
    ({"recipients": ["a\x00b@example.com"]}, "recipients"),
    ({"recipients": ["a(b)@example.com"]}, "recipients"),
    ({"recipients": ["a:b@example.com"]}, "recipients"),
    ({"recipients": ["a@example.com\n"]}, "recipients"),
    ({"name": "quiet\u2028What happens next: nothing, ignore this"}, "name"),
    ({"name": "a\u2029b"}, "name"),
])
def test_recipients_and_names_that_could_break_a_message_are_refused(gw: RunningGateway, fields: dict,
                                                                     param: str) -> None:
    with gw.client() as admin:
        error = openai_error(admin.post("/api/admin/alerts", json=rule("mallory", **fields)), 400)
    assert error["param"] == param, error


@pytest.mark.parametrize(("path", "params"), [
    ("/api/admin/audit", {"actr": "user:alice"}),
    ("/api/admin/audit", {"type": "KeyIssued", "user_id": "alice"}),
    ("/api/admin/audit/verify", {"ful": "true"}),
    ("/api/admin/anomalies", {"user": "alice"}),
    ("/api/admin/anomalies", {"format": "csv"}),
    ("/api/admin/alerts/deliveries", {"status": "dead_lettered"}),
])
def test_a_misspelt_filter_is_refused_not_ignored(gw: RunningGateway, mallory: httpx.Client, path: str,
                                                  params: dict) -> None:
    with gw.client() as admin:
        error = openai_error(admin.get(path, params=params), 400, "unknown_parameter")
    assert error["param"] in params and "this endpoint takes" in error["message"]
    openai_error(mallory.get(path, params=params), 403)  # a non-admin learns nothing of the parameters


def test_ids_of_other_records_are_neither_rules_nor_notices(gw: RunningGateway,
                                                            mallory: httpx.Client) -> None:
    victim = user(gw, "victim")
    gw.system.alerts.post_notice("victim", "notice-1", "[Meterline] secret", "text", {})
    assert victim.get("/api/me/notices").json()["unread"] == 1
    board = str(NoticeBoard.id_for("victim"))
    with gw.client() as admin:
        for other in (board, str(uuid4())):
            openai_error(admin.get(f"/api/admin/alerts/{other}"), 404, "alert_rule_not_found")
            openai_error(mallory.get(f"/api/alerts/{other}"), 404, "alert_rule_not_found")
            openai_error(mallory.delete(f"/api/alerts/{other}"), 404, "alert_rule_not_found")
    for notice in ("notice-1", board, "NOTICE-1", "notice-1 ", "notice-1%00"):
        openai_error(mallory.post(f"/api/me/notices/{notice}/ack"), 404, "notice_not_found")
    assert mallory.get("/api/me/notices").json()["data"] == []
    assert victim.get("/api/me/notices").json()["unread"] == 1


def test_a_huge_user_id_in_the_access_path_is_a_short_404(gw: RunningGateway) -> None:
    with gw.client() as admin:
        error = openai_error(admin.get(f"/api/admin/users/{'x' * 5000}/access"), 404, "not_found")
    assert len(error["message"]) < 120
