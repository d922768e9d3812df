"""The consumer's usage views end to end (issue 11): this month against every budget that
applies, and the last requests, with figures worked out by hand from the simulator.

The simulator counts ceil(utf8 bytes / 4) + 3 prompt tokens per chat message and
min(max_tokens, 16) completion tokens; `sim` costs $1 per million input and $2 per
million output tokens, so a request costs prompt + 2 x completion micro-dollars.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from infra.runner import ALL_ROLES
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, openai_error, running_gateway, sim_config

# (messages, max_tokens) -> prompt, completion, cost in micro-dollars
REQUESTS = [
    ([{"role": "user", "content": "hello world!"}], 4),                   # 3+3=6, 4, 6+8=14
    ([{"role": "user", "content": "x" * 40}], 30),                        # 10+3=13, 16, 13+32=45
    ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], 1),  # 5+4=9, 1, 11
]
EXPECTED = [(6, 4, "0.000014"), (13, 16, "0.000045"), (9, 1, "0.000011")]  # spent: 70 micro-dollars


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-consumer"),
                                                   sim_config(sim.base_url), roles=ALL_ROLES) as gateway:
        yield gateway


def chat(gw: RunningGateway, secret: str, messages: list[dict], max_tokens: int) -> None:
    response = httpx.post(gw.v1 + "/chat/completions", headers={"authorization": f"Bearer {secret}"},
                          json={"model": "sim", "max_tokens": max_tokens, "messages": messages}, timeout=30)
    assert response.status_code == 200, response.text


def set_budget(gw: RunningGateway, scope: str, scope_id: str, limit: str, mode: str = "hard") -> None:
    with gw.client() as admin:
        admin.put(f"/api/admin/budgets/{scope}/{scope_id}",
                  json={"limit_usd": limit, "mode": mode}).raise_for_status()


def recent(gw: RunningGateway, token: str, count: int, **params) -> list[dict]:
    """The last requests, once the projector has brought `count` of them to analytics."""
    with gw.client(token) as client:
        for _ in range(200):
            response = client.get("/api/usage/requests", params=params)
            assert response.status_code == 200, response.text
            if len(data := response.json()["data"]) >= count:
                return data
            time.sleep(0.05)
    raise AssertionError(f"analytics shows {len(data)} of {count} requests")


def test_this_month_reports_every_budget_over_the_user_by_hand(gw) -> None:
    token = gw.setup_user("uma", team_id="team-uma")
    key = gw.issue_key("uma", name="laptop")
    set_budget(gw, "key", key["id"], "0.000175")
    set_budget(gw, "user", "uma", "1", mode="soft")
    set_budget(gw, "team", "team-uma", "0.00028", mode="grace")
    for messages, max_tokens in REQUESTS:
        chat(gw, key["key"], messages, max_tokens)
    now = datetime.now(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC).isoformat()
    with gw.client(token) as uma:
        this_month = uma.get("/api/usage").json()["this_month"]
    assert this_month == [
        {"scope": "key", "id": key["id"], "period": "month", "period_start": start, "spent_usd": "0.00007",
         "limit_usd": "0.000175", "remaining_usd": "0.000105", "percent": 40.0, "mode": "hard"},
        {"scope": "user", "id": "uma", "period": "month", "period_start": start, "spent_usd": "0.00007",
         "limit_usd": "1", "remaining_usd": "0.99993", "percent": 0.01, "mode": "soft"},  # 0.007 % rounds up
        {"scope": "team", "id": "team-uma", "period": "month", "period_start": start,
         "spent_usd": "0.00007", "limit_usd": "0.00028", "remaining_usd": "0.00021", "percent": 25.0,
         "mode": "grace"}]


def test_spend_past_a_soft_limit_leaves_nothing_remaining_never_less(gw) -> None:
    token = gw.setup_user("otto", team_id=None)
    key = gw.issue_key("otto")
    set_budget(gw, "key", key["id"], "0.00001", mode="soft")
    chat(gw, key["key"], *REQUESTS[0])  # 14 micro-dollars against a limit of 10
    with gw.client(token) as otto:
        [entry] = otto.get("/api/usage").json()["this_month"]
    assert (entry["spent_usd"], entry["remaining_usd"], entry["percent"]) == ("0.000014", "0", 140.0)


def test_a_user_without_budgets_has_an_empty_this_month_and_everyone_has_none(gw) -> None:
    token = gw.setup_user("nia")
    with gw.client(token) as nia:
        assert nia.get("/api/usage").json()["this_month"] == []
    with gw.client() as admin:
        assert admin.get("/api/usage").json()["this_month"] is None
        assert admin.get("/api/usage", params={"user_id": "nia"}).json()["this_month"] == []


def test_the_last_requests_show_model_key_tokens_and_cost_newest_first_and_no_content(gw) -> None:
    token = gw.setup_user("lea")
    key = gw.issue_key("lea", name="ci runner")
    for messages, max_tokens in REQUESTS:
        chat(gw, key["key"], messages, max_tokens)
    data = recent(gw, token, 3)
    assert [(r["prompt_tokens"], r["completion_tokens"], r["cost_usd"]) for r in data] == EXPECTED[::-1]
    assert {(r["model"], r["key_id"], r["key_name"], r["status"], r["application"]) for r in data} == {
        ("sim", key["id"], "ci runner", 200, None)}
    assert [r["time"] for r in data] == sorted((r["time"] for r in data), reverse=True)
    assert all(set(r) == {"time", "request_id", "model", "key_id", "key_name", "prompt_tokens",
                          "completion_tokens", "cost_usd", "latency_ms", "status", "application"}
               for r in data)
    assert all(isinstance(r["latency_ms"], int) and r["request_id"] for r in data)
    with gw.client(token) as lea:
        text = lea.get("/api/usage/requests").text
        assert "hello world" not in text and "be brief" not in text and "x" * 40 not in text
        assert len(lea.get("/api/usage/requests", params={"limit": 2}).json()["data"]) == 2
    with gw.client() as admin:
        assert admin.get("/api/usage/requests", params={"user_id": "lea"}).json()["data"] == data


def test_another_users_usage_and_requests_are_forbidden(gw) -> None:
    token = gw.setup_user("max")
    gw.setup_user("kim")
    with gw.client(token) as mallory:
        for path in ("/api/usage", "/api/usage/requests"):
            openai_error(mallory.get(path, params={"user_id": "kim"}), 403, "not_your_resource")


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5"])
def test_a_bad_limit_is_a_400_naming_limit(gw, limit: str) -> None:
    token = gw.setup_user("lim")
    with gw.client(token) as client:
        error = openai_error(client.get("/api/usage/requests", params={"limit": limit}), 400)
    assert error["param"] == "limit" and "limit" in error["message"]
