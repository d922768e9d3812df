"""/v1 requests the gateway refuses: 401, 403/404, 429, 400/413, and old secrets after a rotation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from gateway.v1.estimate import prompt_upper_bound
from tests.support.gateway import RunningGateway, openai_error
from tests.support.gateway_errors import MAX_BODY, USER_MSG, chat, post
from tests.support.gateway_errors import clock as clock  # fixtures, used by name
from tests.support.gateway_errors import gw as gw
from tests.support.gateway_errors import key as key
from tests.support.gateway_errors import sim as sim

# ----- 401: who is calling ------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/chat/completions"), ("POST", "/completions"),
                                              ("POST", "/embeddings"), ("GET", "/models")])
def test_a_request_without_an_api_key_is_refused_with_401(gw, method, path):
    response = httpx.request(method, gw.v1 + path, json={"model": "sim"})
    error = openai_error(response, 401, "missing_api_key")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "sk-ml-no-bearer-word"])
def test_an_authorization_header_that_is_not_a_bearer_key_is_401(gw, header):
    response = httpx.post(gw.v1 + "/chat/completions", headers={"authorization": header},
                          json={"model": "sim", "messages": USER_MSG})
    openai_error(response, 401)


def test_an_unknown_api_key_is_refused_with_401(gw):
    openai_error(chat(gw, "sk-ml-this-key-was-never-issued-0123456789"), 401, "invalid_api_key")
    openai_error(httpx.get(gw.v1 + "/models", headers={"authorization": "Bearer sk-ml-nope"}), 401,
                 "invalid_api_key")


def test_a_revoked_key_is_refused_with_401_at_once(gw, key):
    assert chat(gw, key["key"]).status_code == 200
    with gw.client() as admin:
        admin.delete(f"/api/keys/{key['id']}").raise_for_status()
    openai_error(chat(gw, key["key"]), 401, "invalid_api_key")


def test_an_expired_key_is_refused_with_401_once_its_time_passes(gw, clock):
    key = gw.issue_key("alice", expires_at=(clock.now() + timedelta(hours=1)).isoformat())
    assert chat(gw, key["key"]).status_code == 200
    clock.advance(minutes=59)
    assert chat(gw, key["key"]).status_code == 200
    clock.advance(minutes=2)
    openai_error(chat(gw, key["key"]), 401, "invalid_api_key")
    with gw.client() as admin:
        listed = {k["id"]: k for k in admin.get("/api/keys", params={"user_id": "alice"}).json()["data"]}
    assert listed[key["id"]]["status"] == "expired"


# ----- 403 / 404: which model -------------------------------------------------------------


def test_a_model_outside_the_keys_scope_is_refused_with_403(gw):
    key = gw.issue_key("alice", models=["sim"])
    response = post(gw, key["key"], "/embeddings", json={"model": "sim-embed", "input": "x"})
    error = openai_error(response, 403, "model_not_allowed")
    assert error["type"] == "permission_error"
    assert "sim-embed" in error["message"]


def test_an_unknown_model_is_404(gw, key):
    error = openai_error(chat(gw, key["key"], model="no-such-model"), 404, "model_not_found")
    assert "no-such-model" in error["message"]


def test_a_chat_model_on_the_embeddings_endpoint_is_400(gw, key):
    openai_error(post(gw, key["key"], "/embeddings", json={"model": "sim", "input": "x"}), 400,
                 "wrong_endpoint")


# ----- 429: budgets and rate limits ---------------------------------------------------------


def test_an_exhausted_hard_budget_refuses_with_429_insufficient_quota_naming_scope_and_limit(gw, sim):
    key = gw.issue_key("alice", budget_usd="0.00001", budget_mode="hard")  # 10 000 nano-USD
    calls = sim.app.requests
    error = openai_error(chat(gw, key["key"], max_tokens=64), 429, "insufficient_quota")
    assert error["type"] == "insufficient_quota"
    assert f"key {key['id']}" in error["message"]
    assert "$0.00001" in error["message"]
    assert sim.app.requests == calls, "a refused request must not reach the model server"


@pytest.mark.parametrize(("endpoint", "field"), [("/chat/completions", "n"), ("/completions", "n"),
                                               ("/completions", "best_of")])
def test_a_request_for_several_choices_reserves_max_tokens_for_each(gw, endpoint, field):
    # Each choice may use max_tokens: a reservation of one would let n choices pass a hard cap.
    body = {"model": "sim", "max_tokens": 64}
    body.update({"messages": USER_MSG} if endpoint == "/chat/completions" else {"prompt": "hello"})
    price = gw.system.ctx.registry_view.model("sim").price_at(gw.system.clock.now())
    bound = prompt_upper_bound(body, "chat" if endpoint == "/chat/completions" else "completions")
    one, three = price.worst_case_cost(bound, 64), price.worst_case_cost(bound, 3 * 64)
    key = gw.issue_key("alice", budget_usd=format(Decimal(one * 2) / 10**9, "f"), budget_mode="hard")
    assert 2 * one < three
    assert post(gw, key["key"], endpoint, json={**body, field: 1}).status_code == 200
    openai_error(post(gw, key["key"], endpoint, json={**body, field: 3}), 429, "insufficient_quota")
    for bad in (0, "3", 1.5, True):
        assert openai_error(post(gw, key["key"], endpoint, json={**body, field: bad}), 400)["param"] == field


@pytest.mark.parametrize(("endpoint", "body", "budget_usd"), [
    ("/completions", {"model": "sim", "prompt": [1] * 1000, "max_tokens": 1}, "0.0005"),
    ("/completions", {"model": "sim", "prompt": [[7] * 500, [9] * 500], "max_tokens": 1}, "0.0005"),
    ("/embeddings", {"model": "sim-embed", "input": [[3] * 1000]}, "0.00005")],
    ids=["prompt of token ids", "batch of token-id prompts", "embedding input of token ids"])
def test_a_prompt_given_as_token_ids_is_reserved_for_every_token(gw, endpoint, body, budget_usd):
    # 1000 tokens cost twice the budget: the worst case must see them, not 0 bytes of text.
    key = gw.issue_key("alice", budget_usd=budget_usd, budget_mode="hard")
    openai_error(post(gw, key["key"], endpoint, json=body), 429, "insufficient_quota")


def test_the_rpm_limit_refuses_the_third_request_in_a_minute_with_429(gw, sim):
    key = gw.issue_key("alice", rpm_limit=2)
    assert [chat(gw, key["key"]).status_code for _ in range(2)] == [200, 200]
    calls = sim.app.requests
    response = chat(gw, key["key"])
    error = openai_error(response, 429, "rate_limit_exceeded")
    assert "2 requests per minute" in error["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert sim.app.requests == calls


def test_the_tpm_limit_counts_what_requests_really_used(gw, sim):
    # The bound of this prompt is 33 tokens (16 + 8 per message + 9 bytes); the simulator
    # counts 5 prompt tokens, and max_tokens output tokens (up to 16).
    key = gw.issue_key("alice", tpm_limit=100)
    assert chat(gw, key["key"], max_tokens=4).status_code == 200  # holds 37, then really 9
    error = openai_error(chat(gw, key["key"], max_tokens=60), 429, "rate_limit_exceeded")  # 9 + 93
    assert "100 tokens per minute" in error["message"]
    assert chat(gw, key["key"], max_tokens=50).status_code == 200  # 9 + 83: fits only at 9


# ----- 400 / 413: what was sent -----------------------------------------------------------

BAD_BODIES = {
    "not JSON": b'{"model": "sim", "messages": [',
    "a JSON array": b'[{"model": "sim"}]',
    "a JSON string": b'"sim"',
    "max_tokens a word": b'{"model": "sim", "messages": [], "max_tokens": "ten"}',
    "max_tokens zero": b'{"model": "sim", "messages": [], "max_tokens": 0}',
    "max_tokens a float": b'{"model": "sim", "messages": [], "max_tokens": 1.5}',
    "max_completion_tokens true": b'{"model": "sim", "messages": [], "max_completion_tokens": true}',
    "stream a word": b'{"model": "sim", "messages": [], "stream": "yes"}',
    "stream_options a word": b'{"model": "sim", "messages": [], "stream": true, "stream_options": "x"}',
    "messages a string": b'{"model": "sim", "messages": "hello"}',
    "messages a number": b'{"model": "sim", "messages": 5}',
    "messages an object": b'{"model": "sim", "messages": {"role": "user", "content": "hi"}}',
    "messages missing": b'{"model": "sim"}',
    "a message not an object": b'{"model": "sim", "messages": ["hello"]}',
    "model missing": b'{"messages": []}',
    "model a number": b'{"model": 5, "messages": []}',
    "job header not a UUID": b'{"model": "sim", "messages": []}',
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_malformed_chat_request_is_400_and_never_reaches_the_model_server(gw, sim, key, case):
    headers = {"content-type": "application/json"}
    if case == "job header not a UUID":
        headers["x-meterline-job"] = "job-42"
    calls = sim.app.requests
    response = post(gw, key["key"], content=BAD_BODIES[case], headers=headers)
    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert sim.app.requests == calls


def test_streamed_embeddings_are_400(gw, key):
    response = post(gw, key["key"], "/embeddings", json={"model": "sim-embed", "input": "x", "stream": True})
    assert openai_error(response, 400)["param"] == "stream"


def test_a_body_over_max_body_bytes_is_413(gw, sim, key):
    big = {"model": "sim", "messages": [{"role": "user", "content": "x" * MAX_BODY}]}
    calls = sim.app.requests
    openai_error(post(gw, key["key"], json=big), 413, "request_too_large")

    def chunked():  # no content-length: the limit must hold while reading
        yield b'{"model": "sim", "messages": [{"role": "user", "content": "'
        for _ in range(MAX_BODY // 512 + 1):
            yield b"y" * 512
        yield b'"}]}'

    openai_error(post(gw, key["key"], content=chunked()), 413, "request_too_large")
    assert sim.app.requests == calls


def test_a_body_just_under_max_body_bytes_is_served(gw, key):
    body = {"model": "sim", "messages": [{"role": "user", "content": "x" * (MAX_BODY - 200)}],
            "max_tokens": 1}
    assert chat(gw, key["key"], **body).status_code == 200


# ----- rotation -----------------------------------------------------------------------------


def rotate(gw: RunningGateway, key_id: str, grace_seconds: int | None = None) -> dict:
    body = None if grace_seconds is None else {"grace_seconds": grace_seconds}
    with gw.client() as admin:
        response = admin.post(f"/api/keys/{key_id}/rotate", json=body)
        response.raise_for_status()
        return response.json()


def test_rotation_without_grace_kills_the_old_secret_at_once(gw, key):
    rotated = rotate(gw, key["id"])
    assert rotated["key"] != key["key"] and rotated["old_key_valid_until"] is None
    openai_error(chat(gw, key["key"]), 401, "invalid_api_key")
    assert chat(gw, rotated["key"]).status_code == 200
    facts = gw.wait_metered(key["id"], 1)
    assert [f.key_id for f in facts] == [key["id"]]  # the same key, with a new secret


def test_rotation_with_grace_keeps_the_old_secret_until_the_grace_ends(gw, clock, key):
    rotated = rotate(gw, key["id"], grace_seconds=600)
    assert rotated["old_key_valid_until"] == (clock.now() + timedelta(seconds=600)).isoformat()
    assert chat(gw, key["key"]).status_code == 200
    assert chat(gw, rotated["key"]).status_code == 200
    clock.advance(seconds=599)
    assert chat(gw, key["key"]).status_code == 200
    clock.advance(seconds=1)
    openai_error(chat(gw, key["key"]), 401, "invalid_api_key")
    assert chat(gw, rotated["key"]).status_code == 200


def test_rotating_twice_kills_the_first_secret_even_inside_its_grace(gw, key):
    first = rotate(gw, key["id"], grace_seconds=600)
    second = rotate(gw, key["id"])
    openai_error(chat(gw, key["key"]), 401)
    openai_error(chat(gw, first["key"]), 401)
    assert chat(gw, second["key"]).status_code == 200
