"""POST /v1/responses through the gateway on the simulator (issue 15): metered to the token and
the nano-unit, streamed with the Responses event stream, reserved at the worst case, and its
stateful features refused with clear 400s. Models: tests/support/api_models.py."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import orjson
import pytest

from domain.quota_policy import Scope
from domain.usage import UsageSource
from tests.support.api_models import DRIP_TOKENS, expected_cost, new_key
from tests.support.gateway import RunningGateway, openai_error

pytest_plugins = ["tests.support.api_gateway"]  # fixtures: sims, sim, gw


def post(gw: RunningGateway, key: dict, body: dict, path: str = "/responses") -> httpx.Response:
    return httpx.post(gw.v1 + path, json=body, headers={"authorization": f"Bearer {key['key']}"}, timeout=60)


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of every event of a Responses stream."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], orjson.loads(lines["data"])))
    return events


# ----- metering ------------------------------------------------------------------------------


def test_an_answer_is_metered_with_its_cached_and_reasoning_tokens_to_the_nano_unit(gw):
    key = new_key(gw)
    response = post(gw, key, {"model": "sim-cache", "input": "what is the meaning of it all?",
                              "instructions": "answer briefly", "max_output_tokens": 12})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "response" and body["model"] == "sim-cache"
    usage = body["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] > 0
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.endpoint == "/v1/responses" and fact.event_id == response.headers["x-request-id"]
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens, fact.reasoning_tokens) == (
        usage["input_tokens"], usage["output_tokens"], usage["input_tokens_details"]["cached_tokens"],
        usage["output_tokens_details"]["reasoning_tokens"])
    assert fact.usage_source is UsageSource.UPSTREAM and fact.cache_write_tokens == 0
    assert fact.cost == expected_cost("sim-cache", prompt=usage["input_tokens"],
                                      output=usage["output_tokens"],
                                      cached=usage["input_tokens_details"]["cached_tokens"],
                                      reasoning=usage["output_tokens_details"]["reasoning_tokens"])
    assert gw.system.ledger.budget(Scope.KEY, key["id"]).period_spent == fact.cost


def test_a_stream_relays_the_responses_events_and_is_metered_once_from_response_completed(gw):
    key = new_key(gw)
    response = post(gw, key, {"model": "sim", "input": [{"role": "user", "content": "count"}],
                              "stream": True, "max_output_tokens": 10})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [name for name, _ in events][:2] == ["response.created", "response.in_progress"]
    assert all(name == data["type"] for name, data in events)
    assert events[-1][0] == "response.completed"
    deltas = [data["delta"] for name, data in events if name == "response.output_text.delta"]
    assert len(deltas) == 10
    usage = events[-1][1]["response"]["usage"]
    assert events[-1][1]["response"]["model"] == "sim"
    [fact] = gw.wait_metered(key["id"], 1)
    time.sleep(0.2)
    assert len(gw.metered(key["id"])) == 1, "metered exactly once"
    assert fact.stream and fact.final and fact.requests == 1
    assert (fact.prompt_tokens, fact.completion_tokens) == (usage["input_tokens"], usage["output_tokens"])
    assert fact.cost == expected_cost("sim", prompt=usage["input_tokens"], output=usage["output_tokens"])
    assert fact.event_id == response.headers["x-request-id"]


def test_the_openai_sdk_creates_and_streams_responses_through_the_gateway(gw):
    key = new_key(gw)
    client = openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0)
    answer = client.responses.create(model="sim-cache", input="hello", max_output_tokens=6)
    assert answer.output_text and answer.usage.output_tokens == 6
    with client.responses.stream(model="sim", input="hello", max_output_tokens=5) as stream:
        final = stream.get_final_response()
    assert final.usage.output_tokens == 5
    events = list(client.responses.create(model="sim", input="hi", max_output_tokens=3, stream=True))
    assert events[-1].type == "response.completed"
    facts = gw.wait_metered(key["id"], 3)
    assert sorted(f.completion_tokens for f in facts) == [3, 5, 6]
    assert {f.endpoint for f in facts} == {"/v1/responses"}


def test_a_client_that_disconnects_mid_stream_is_still_metered(gw):
    key = new_key(gw)
    started = time.monotonic()
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", gw.v1 + "/responses", headers={"authorization": f"Bearer {key['key']}"},
            json={"model": "sim-drip", "input": "count slowly", "stream": True}) as response:
        assert response.status_code == 200
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("data:") and "output_text.delta" in line
            if deltas == 3:
                break
    assert time.monotonic() - started < 1.5  # left about 1.5 s before the stream would have ended
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.client_disconnected and fact.stream and fact.status == 200
    assert 0 < fact.completion_tokens < DRIP_TOKENS and fact.prompt_tokens > 0 and fact.cost > 0


# ----- reservations --------------------------------------------------------------------------


def test_the_upstream_is_sent_the_cap_the_request_was_reserved_for_and_store_false(gw, sim):
    key = new_key(gw)
    assert post(gw, key, {"model": "sim", "input": "hi", "max_output_tokens": 1_000_000,
                          "max_tokens": 5_000_000}).status_code == 200
    sent = sim.app.last_body
    assert sent["max_output_tokens"] == 64 and "max_tokens" not in sent  # the model's cap
    assert sent["store"] is False and sent["model"] == "sim-model"
    assert post(gw, key, {"model": "sim", "input": "hi"}).status_code == 200
    assert sim.app.last_body["max_output_tokens"] == 64


def test_a_large_max_output_tokens_cannot_pass_a_hard_cap_but_an_affordable_request_is_served(gw, sim):
    # 100 000 nano-USD: a request held at 8 output tokens fits (about 50 000 reserved, 20 000
    # spent), one at the model's cap of 64 (128 000 for the output alone) does not
    key = new_key(gw, budget_usd="0.0001", budget_mode="hard")
    assert post(gw, key, {"model": "sim", "input": "hi", "max_output_tokens": 8}).status_code == 200
    calls = sim.app.requests
    refused = post(gw, key, {"model": "sim", "input": "hi", "max_output_tokens": 10**9})
    openai_error(refused, 429, "insufficient_quota")
    assert "request_id" in refused.json()["error"] and sim.app.requests == calls


LARGE = "x" * 300_000  # 300 000 tokens to a one-byte-a-token bound: 30 cents at $1.00 a million


@pytest.mark.parametrize("body", [
    {"input": [{"role": "user", "content": "hi"}] * 2 + [{"role": "user", "content": [
        {"type": "input_text", "text": LARGE}]}]},
    {"input": [{"type": "function_call_output", "call_id": "c1", "output": LARGE}]},
    {"input": "hi", "instructions": LARGE},
    {"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"description": LARGE}}]},
    {"input": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": LARGE}]}]},
], ids=["input items", "tool output item", "instructions", "tool schema", "reasoning item"])
def test_a_large_input_in_any_place_is_refused_by_a_ten_cent_hard_budget(gw, sim, body):
    key = new_key(gw, budget_usd="0.10", budget_mode="hard")
    calls = sim.app.requests
    openai_error(post(gw, key, {"model": "sim", **body}), 429, "insufficient_quota")
    assert sim.app.requests == calls and gw.metered(key["id"]) == []


@pytest.mark.parametrize(("path", "body"), [
    ("/responses", {"model": "sim", "input": "go"}),
    ("/messages", {"model": "sim", "max_tokens": 64, "messages": [{"role": "user", "content": "go"}]})])
def test_a_burst_against_a_hard_budget_never_settles_past_it(gw, path, body):
    key = new_key(gw, budget_usd="0.001", budget_mode="hard")  # about seven worst cases
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: post(gw, key, body, path).status_code, range(40)))
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses
    facts = gw.wait_metered(key["id"], statuses.count(200))
    assert sum(f.cost for f in facts) <= 1_000_000


# ----- what the gateway does not serve -------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "code"), [
    ("store", True, "store_not_supported"),
    ("previous_response_id", "resp_123", "stateful_request_not_supported"),
    ("conversation", "conv_1", "stateful_request_not_supported"),
    ("prompt", {"id": "pmpt_1"}, "stateful_request_not_supported"),
    ("background", True, "stateful_request_not_supported"),
])
def test_stateful_requests_are_a_clear_400_unless_the_upstream_keeps_state(gw, sim, field, value, code):
    key = new_key(gw)
    calls = sim.app.requests
    error = openai_error(post(gw, key, {"model": "sim", "input": "hi", field: value}), 400, code)
    assert error["param"] == field and "upstream_keeps_state" in error["message"]
    assert sim.app.requests == calls
    if field in ("store", "prompt"):  # previous_response_id and conversation: test_responses_messages_attacks
        served = post(gw, key, {"model": "sim-stateful", "input": "hi", field: value})
        assert served.status_code == 200
        assert sim.app.last_body[field] == value


@pytest.mark.parametrize(("field", "value"), [("prompt", {"id": "pmpt_1"})])  # previous_response_id:
# tests/integration/test_responses_messages_attacks.py (it must be an id this key was given)
def test_state_the_upstream_keeps_cannot_be_held_by_a_hard_budget_so_is_refused_under_one(gw, sim, field,
                                                                                         value):
    key = new_key(gw, budget_usd="1", budget_mode="hard")
    calls = sim.app.requests
    error = openai_error(post(gw, key, {"model": "sim-stateful", "input": "hi", field: value}), 400,
                         "unbounded_input")
    assert error["param"] == field and "hard budget of key" in error["message"]
    assert sim.app.requests == calls


def test_an_input_item_that_references_a_stored_item_is_a_clear_400(gw, sim):
    calls = sim.app.requests
    body = {"model": "sim", "input": [{"type": "item_reference", "id": "msg_1"}]}
    error = openai_error(post(gw, new_key(gw), body), 400, "stateful_request_not_supported")
    assert error["param"] == "input" and sim.app.requests == calls


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_usage_is_metered_by_estimate_with_its_tags(gw, stream):
    key = new_key(gw)
    response = httpx.post(gw.v1 + "/responses", timeout=30, json={
        "model": "sim-quiet", "input": "a question of some length", "max_output_tokens": 8, "stream": stream,
        "metadata": {"app": "canopy"}}, headers={"authorization": f"Bearer {key['key']}",
                                                  "x-meterline-tags": "env=prod"})
    assert response.status_code == 200
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.usage_source is UsageSource.ESTIMATED and fact.prompt_tokens > 0
    assert fact.completion_tokens > 0 and fact.cost > 0
    assert dict(fact.labels) == {"app": "canopy", "env": "prod"}


def test_store_false_is_served(gw):
    assert post(gw, new_key(gw), {"model": "sim", "input": "hi", "store": False}).status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_stored_response_is_never_found_and_says_why(gw, method):
    key = new_key(gw)
    response = httpx.request(method, gw.v1 + "/responses/resp_abc", timeout=10,
                             headers={"authorization": f"Bearer {key['key']}"})
    error = openai_error(response, 404, "response_not_found")
    assert "stores no responses" in error["message"]
    openai_error(httpx.request(method, gw.v1 + "/responses/resp_abc", timeout=10), 401)


def test_a_model_whose_upstream_does_not_speak_responses_is_a_400_naming_what_it_offers(gw, sim):
    key = new_key(gw)
    calls = sim.app.requests
    error = openai_error(post(gw, key, {"model": "sim-chat", "input": "hi"}), 400, "api_not_supported")
    assert "'sim-chat'" in error["message"] and "/v1/chat/completions" in error["message"]
    assert "/v1/responses" in error["message"] and sim.app.requests == calls


@pytest.mark.parametrize("body", [
    {"model": "sim"},
    {"model": "sim", "input": 5},
    {"model": "sim", "input": ["just a string item"]},
    {"model": "sim", "input": "hi", "max_output_tokens": 0},
    {"model": "sim", "input": "hi", "max_output_tokens": "10"},
    {"model": "sim", "input": "hi", "stream": "yes"},
    {"model": "sim", "input": "hi", "tools": {"type": "function"}},
    {"model": "sim", "input": "hi", "instructions": 5},
    {"model": "sim", "input": "hi", "store": "no"},
])
def test_a_malformed_request_is_a_400_that_never_reaches_the_model_server(gw, sim, body):
    key = new_key(gw)
    calls = sim.app.requests
    openai_error(post(gw, key, body), 400)
    assert sim.app.requests == calls


def test_an_upstream_failure_is_a_502_in_openai_shape_and_metered_at_no_cost(gw):
    key = new_key(gw)
    openai_error(post(gw, key, {"model": "sim-fails", "input": "hi"}), 502, "upstream_error")
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.status == 500 and fact.cost == 0


def test_an_image_with_no_bound_under_a_hard_budget_is_refused_naming_input(gw, sim):
    key = new_key(gw, budget_usd="1", budget_mode="hard")
    calls = sim.app.requests
    body = {"model": "sim", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}
    error = openai_error(post(gw, key, body), 400, "unbounded_input")
    assert error["param"] == "input" and "max_image_tokens" in error["message"]  # the field it is in
    assert sim.app.requests == calls
