"""Explain (issue 12): every /v1 refusal carries a request id and leaves a decision record that
GET /api/admin/requests/{id} returns; a served request's id finds its metered charge."""

from __future__ import annotations

import json
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest

from tests.support.gateway import RunningGateway, openai_error
from tests.support.gateway_errors import chat, post
from tests.support.gateway_errors import clock as clock  # fixtures, used by name
from tests.support.gateway_errors import gw as gw
from tests.support.gateway_errors import sim as sim


def explained(gw: RunningGateway, request_id: str, written: bool = True) -> dict:
    if written:  # read it back from the store, not from the queue of records not yet written
        gw.system.ctx.refusals.flush()
    with gw.client() as admin:
        response = admin.get(f"/api/admin/requests/{request_id}")
    assert response.status_code == 200, response.text
    return response.json()


def request_id_of(response: httpx.Response) -> str:
    """The id a refusal's body and header both carry (they must agree)."""
    error = response.json()["error"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error["request_id"]


def test_a_hard_cap_refusal_names_every_scope_checked_and_the_deciding_one(gw):
    gw.setup_user("hana", team_id="team-h")
    key = gw.issue_key("hana", budget_usd="0.00001", budget_mode="hard")
    response = chat(gw, key["key"], max_tokens=64)
    openai_error(response, 429, "insufficient_quota")
    record = explained(gw, request_id_of(response))
    assert (record["outcome"], record["rule"], record["status"]) == ("refused", "hard_cap", 429)
    assert (record["key_id"], record["user_id"], record["team_id"], record["model"]) == (
        key["id"], "hana", "team-h", "sim")
    (scope,) = [s for s in record["scopes"] if s["deciding"]]
    assert (scope["scope"], scope["id"], scope["mode"], scope["limit"]) == ("key", key["id"], "hard", 10_000)
    assert scope["verdict"] == "refuse" and scope["spent"] == 0 and scope["reserved"] == 0
    assert scope["requested"] > scope["limit"] and scope["policy_version"] == record["policy_version"] == 1
    assert record["deciding_scope"] == f"key:{key['id']}"


def test_a_grace_refusal_is_told_apart_from_a_hard_one(gw):
    key = gw.issue_key("alice", budget_usd="0.00001", budget_mode="grace")
    response = chat(gw, key["key"], max_tokens=64)
    openai_error(response, 429, "insufficient_quota")
    record = explained(gw, request_id_of(response))
    assert record["rule"] == "grace_cap"
    assert [s["mode"] for s in record["scopes"] if s["deciding"]] == ["grace"]
    assert [s["cap"] for s in record["scopes"] if s["deciding"]] == [11_000]  # limit + 10 %


def test_a_rate_limited_refusal_records_the_limit_and_the_wait(gw):
    key = gw.issue_key("alice", rpm_limit=1)
    assert chat(gw, key["key"]).status_code == 200
    response = chat(gw, key["key"])
    openai_error(response, 429, "rate_limit_exceeded")
    record = explained(gw, request_id_of(response))
    assert (record["rule"], record["rpm_limit"], record["key_id"]) == ("rate_limit", 1, key["id"])
    assert record["retry_after_s"] == int(response.headers["retry-after"])


def test_a_revoked_key_is_explained_as_revoked_naming_the_key_but_not_its_secret(gw):
    key = gw.issue_key("alice")
    with gw.client() as admin:
        admin.delete(f"/api/keys/{key['id']}").raise_for_status()
    response = chat(gw, key["key"])
    openai_error(response, 401, "invalid_api_key")
    record = explained(gw, request_id_of(response))
    assert (record["rule"], record["key_id"], record["user_id"]) == ("key_revoked", key["id"], "alice")
    assert key["key"] not in str(record)


def test_an_expired_key_is_explained_as_expired(gw, clock):
    key = gw.issue_key("alice", expires_at=(clock.now() + timedelta(minutes=30)).isoformat())
    clock.advance(minutes=31)
    response = chat(gw, key["key"])
    openai_error(response, 401, "invalid_api_key")
    record = explained(gw, request_id_of(response), written=False)  # answered from the queue
    assert (record["rule"], record["key_id"], record["key_status"]) == ("key_expired", key["id"], "expired")


def test_an_unknown_key_and_a_missing_key_are_recorded_without_a_principal(gw):
    unknown = chat(gw, "sk-ml-never-issued-0123456789abcdef")
    missing = chat(gw, None)
    assert explained(gw, request_id_of(unknown))["rule"] == "unknown_key"
    record = explained(gw, request_id_of(missing))
    assert (record["rule"], record["key_id"], record["user_id"]) == ("missing_key", None, None)


def test_a_model_outside_the_keys_scope_is_explained_as_out_of_scope(gw):
    key = gw.issue_key("alice", models=["sim"])
    response = post(gw, key["key"], "/embeddings", json={"model": "sim-embed", "input": "x"})
    openai_error(response, 403, "model_not_allowed")
    record = explained(gw, request_id_of(response))
    assert (record["rule"], record["model"], record["key_id"]) == (
        "model_out_of_scope", "sim-embed", key["id"])


def test_a_served_request_is_explained_by_its_charge_tokens_and_price(gw):
    key = gw.issue_key("alice")
    response = chat(gw, key["key"], max_tokens=8)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    (fact,) = gw.wait_metered(key["id"], 1)
    found = explained(gw, request_id, written=False)
    assert found["outcome"] == "served" and found["request_id"] == fact.event_id == request_id
    assert (found["prompt_tokens"], found["completion_tokens"], found["cost"]) == (
        fact.prompt_tokens, fact.completion_tokens, fact.cost)
    assert found["price_version"] == found["price"]["version"] == fact.price_version
    assert found["price"]["input_per_million"] == 1_000_000_000  # $1.00 per million
    assert found["charged_to"] == [f"key:{key['id']}", "user:alice", "team:team-a"]


def test_only_admins_may_explain_a_request(gw):
    token = gw.setup_user("ulla", team_id=None)
    response = chat(gw, "sk-ml-never-issued-0123456789abcdef")
    with gw.client(token) as user:
        refused = user.get(f"/api/admin/requests/{request_id_of(response)}")
    openai_error(refused, 403, "admin_required")


@pytest.mark.parametrize("bad", ["not-a-uuid", "1234", "%00", "x" * 500, "../../etc/passwd"])
def test_a_malformed_request_id_is_a_400_never_a_500(gw, bad):
    with gw.client() as admin:
        response = admin.get(f"/api/admin/requests/{bad}")
    assert response.status_code in (400, 404), response.text
    openai_error(response, response.status_code)


def test_an_unknown_request_id_is_a_404_that_says_why_it_may_be_missing(gw):
    with gw.client() as admin:
        response = admin.get(f"/api/admin/requests/{uuid4()}")
    error = openai_error(response, 404, "request_not_found")
    assert "ledger" in error["message"] and "counted" in error["message"]


def test_a_flood_of_refusals_keeps_20_records_per_key_and_rule_and_counts_the_rest(gw):
    log = gw.system.ctx.refusals
    log.flush(close_minute=True)
    store = log.store()
    before, counted_before = store.stored(), store.counted()
    with httpx.Client(base_url=gw.v1, timeout=30) as client:
        ids = [request_id_of(client.post("/chat/completions", json={"model": "sim"}, headers={
            "authorization": f"Bearer sk-ml-flood-{i:04d}-0123456789abcdef"})) for i in range(300)]
    log.flush(close_minute=True)
    added = store.stored() - before
    # 20 records and one count per key, rule and wall-clock minute; the flood may span two.
    assert added <= 2 * (20 + 1), f"a flood of 300 unknown keys stored {added} events"
    assert store.counted() - counted_before >= 300 - 2 * 20
    assert store.counted() - counted_before + (added - 2) <= 300
    assert explained(gw, ids[0])["rule"] == "unknown_key"


def test_meterline_explain_prints_a_refusal_and_a_served_charge_and_exits_1_on_an_unknown_id(gw, capsys):
    from infra.explain import run
    settings, config = gw.system.settings, gw.system.config
    key = gw.issue_key("alice", models=["sim"])
    refused = post(gw, key["key"], "/embeddings", json={"model": "sim-embed", "input": "x"})
    served = chat(gw, key["key"])
    gw.system.ctx.refusals.flush()
    gw.wait_metered(key["id"], 1)
    capsys.readouterr()
    assert run(settings, config, request_id_of(refused)) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == "model_out_of_scope"
    assert run(settings, config, served.headers["x-request-id"]) == 0
    assert json.loads(capsys.readouterr().out)["charged_to"][0] == f"key:{key['id']}"
    assert run(settings, config, str(uuid4())) == 1
    with pytest.raises(ValueError, match="not a request id"):
        run(settings, config, "req-123")


def test_a_streamed_request_carries_its_id_in_the_head_and_is_explained_with_its_parts_summed(gw):
    key = gw.issue_key("alice", models=["sim"])
    with httpx.stream("POST", gw.v1 + "/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key['key']}"},
                      json={"model": "sim", "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 8, "stream": True}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        response.read()
    facts = gw.wait_metered(key["id"], 1)
    found = explained(gw, request_id, written=False)
    assert found["outcome"] == "served" and found["stream"] and found["complete"]
    assert found["completion_tokens"] == sum(f.completion_tokens for f in facts)
    assert found["cost"] == sum(f.cost for f in facts)


def test_a_refusal_quoting_a_huge_model_name_keeps_a_bounded_record(gw):
    key = gw.issue_key("alice")
    response = chat(gw, key["key"], model="m" * 3000)
    openai_error(response, 404, "model_not_found")
    record = explained(gw, request_id_of(response))
    assert record["rule"] == "model_unknown"
    assert len(record["model"]) <= 1000 and len(record["message"]) <= 1000
