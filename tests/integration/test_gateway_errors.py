"""Every way a /v1 request can fail, seen by a client: OpenAI's error shape and the right status.

One gateway (on a fixed clock) in front of the simulator serves the module; its knobs are
routed as models: sim-slow (answers after 3 s, past the 1 s upstream timeout), sim-error
(HTTP 500), sim-ratelimit (an OpenAI-shaped 429) and dead (a port nobody listens on).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from adapters.clock import FixedClock
from domain.quota_policy import Scope
from gateway.v1.estimate import prompt_upper_bound
from testkit.simulator.server import Simulator
from tests.support.gateway import (
    RunningGateway,
    add_models,
    free_port,
    openai_error,
    running_gateway,
    sim_config,
)

MAX_BODY = 4096
USER_MSG = [{"role": "user", "content": "hello"}]
ROLES = frozenset({"gateway", "ledger", "scheduler"})


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, slow_s=3.0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(scope="module")
def gw(sim: Simulator, clock: FixedClock, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[RunningGateway]:
    config = add_models(sim_config(sim.base_url), {
        "sim-slow": "sim-slow", "sim-error": "sim-error", "sim-ratelimit": "sim-ratelimit",
        "dead": (f"http://127.0.0.1:{free_port()}/v1", "dead")})
    with running_gateway(tmp_path_factory.mktemp("gw-errors"), config, clock=clock, roles=ROLES,
                         max_body_bytes=MAX_BODY, upstream_timeout_s=1.0) as gateway:
        gateway.setup_user("alice")
        yield gateway


@pytest.fixture
def key(gw: RunningGateway) -> dict:
    """A fresh key of alice's for every model, so no test sees another's limits or facts."""
    return gw.issue_key("alice", models=["*"])


def post(gw: RunningGateway, secret: str | None, path: str = "/chat/completions", **kwargs
         ) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"} if secret is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(gw.v1 + path, headers=headers, timeout=30, **kwargs)


def chat(gw: RunningGateway, secret: str | None, **body) -> httpx.Response:
    return post(gw, secret, json={"model": "sim", "messages": USER_MSG, "max_tokens": 4, **body})


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


# ----- passing through ----------------------------------------------------------------------


def test_unknown_fields_reach_the_upstream_unchanged(gw, sim, key):
    extras = {"top_k": 7, "x_vendor_option": {"nested": [1, "two", None]}, "seed": 42,
              "logit_bias": {"50256": -100}, "user": "end-user-9"}
    response = chat(gw, key["key"], **extras)
    assert response.status_code == 200, response.text
    received = sim.app.last_body
    assert {k: received.get(k) for k in extras} == extras
    assert received["model"] == "sim-model"  # the route's upstream name, not the client's
    assert received["messages"] == USER_MSG
    assert response.json()["model"] == "sim"  # the client gets back the name it asked for


def test_the_gateway_caps_max_tokens_at_the_models_limit_upstream(gw, sim, key):
    chat(gw, key["key"], max_tokens=10_000).raise_for_status()
    assert sim.app.last_body["max_tokens"] == 64
    chat(gw, key["key"], max_tokens=None, max_completion_tokens=3).raise_for_status()
    assert sim.app.last_body["max_tokens"] == 3
    assert "max_completion_tokens" not in sim.app.last_body


# ----- 502 / 504: the upstream failed -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_server_error_becomes_502(gw, key, stream):
    error = openai_error(chat(gw, key["key"], model="sim-error", stream=stream), 502, "upstream_error")
    assert "sim-error" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_becomes_502(gw, key, stream):
    error = openai_error(chat(gw, key["key"], model="dead", stream=stream), 502, "upstream_error")
    assert "unreachable" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_answers_too_late_becomes_504(gw, key, stream):
    error = openai_error(chat(gw, key["key"], model="sim-slow", stream=stream), 504, "upstream_timeout")
    assert "1 s" in error["message"]


def test_an_openai_shaped_upstream_4xx_is_passed_through(gw, key):
    openai_error(chat(gw, key["key"], model="sim-ratelimit"), 429, "rate_limit_exceeded")


def test_failed_upstream_calls_are_metered_with_their_status_and_cost_nothing(gw):
    key = gw.issue_key("alice", models=["*"])
    for model in ("sim-error", "dead", "sim-slow", "sim-ratelimit"):
        assert chat(gw, key["key"], model=model).status_code >= 400
    assert chat(gw, key["key"]).status_code == 200
    facts = gw.wait_metered(key["id"], 5)
    assert len(facts) == 5
    by_model = {f.model: f for f in facts}
    assert {m: f.status for m, f in by_model.items()} == {
        "sim-error": 500, "dead": 502, "sim-slow": 504, "sim-ratelimit": 429, "sim": 200}
    assert all(f.cost == 0 for f in facts if f.status != 200)
    assert by_model["sim"].cost > 0
    assert gw.system.ledger.budget(Scope.KEY, key["id"]).period_spent == by_model["sim"].cost


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


# ----- the unexpected -------------------------------------------------------------------------


class BrokenUpstream:
    """An upstream adapter with a bug: every call raises something no handler expects."""

    async def post(self, url: str, body: bytes, timeout_s: float):
        raise RuntimeError("a bug in the upstream adapter")

    async def stream(self, url: str, body: bytes, timeout_s: float):
        raise RuntimeError("a bug in the upstream adapter")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("stream", [False, True])
def test_an_unexpected_failure_is_a_500_in_openai_shape_and_frees_its_reservation(gw, stream):
    key = gw.issue_key("alice", budget_usd="1", budget_mode="hard")
    working, gw.system.ctx.upstream = gw.system.ctx.upstream, BrokenUpstream()
    try:
        response = chat(gw, key["key"], stream=stream)
    finally:
        gw.system.ctx.upstream = working
    error = openai_error(response, 500, "internal_error")
    assert "a bug" not in error["message"]  # no internals leak to the client
    assert gw.system.ctx.guard.snapshot((Scope.KEY, key["id"]))["reserved"] == 0
    assert chat(gw, key["key"], stream=stream).status_code == 200
