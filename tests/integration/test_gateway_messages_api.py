"""POST /v1/messages (Anthropic Messages) through the gateway on the simulator (issue 15):
metered with cache reads and cache creation at their prices, streamed, disconnects metered,
and reserved at the worst case. Errors: test_gateway_messages_errors.py; models:
tests/support/api_models.py."""

from __future__ import annotations

import time
import uuid

import anthropic
import httpx
import orjson
import pytest

from domain.quota_policy import Scope
from domain.usage import UsageSource
from tests.support.api_models import (
    DRIP_TOKENS,
    HI,
    anthropic_error,
    anthropic_sdk,
    expected_cost,
    message,
    new_key,
)
from tests.support.api_models import post_message as post

pytest_plugins = ["tests.support.api_gateway"]  # fixtures: sims, sim, gw

sdk = anthropic_sdk


# ----- metering ------------------------------------------------------------------------------


def test_an_answer_is_metered_with_cache_reads_and_writes_at_their_prices(gw):
    key = new_key(gw)
    response = post(gw, key, message("sim-cache", system="be brief", messages=[
        {"role": "user", "content": [{"type": "text", "text": "a long question for the cache"}]}]))
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    read, written = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    assert read > 0 and written > 0
    [fact] = gw.wait_metered(key["id"], 1)
    prompt = usage["input_tokens"] + read + written
    assert fact.endpoint == "/v1/messages" and fact.usage_source is UsageSource.UPSTREAM
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens, fact.cache_write_tokens) == (
        prompt, usage["output_tokens"], read, written)
    assert fact.cost == expected_cost("sim-cache", prompt=prompt, output=usage["output_tokens"],
                                      cached=read, written=written)
    assert gw.system.ledger.budget(Scope.KEY, key["id"]).period_spent == fact.cost
    assert response.headers["x-request-id"] == fact.event_id


def test_a_stream_sends_anthropics_events_and_is_metered_once_from_start_and_delta(gw):
    key = new_key(gw)
    response = post(gw, key, message("sim-cache", stream=True))
    assert response.status_code == 200
    blocks = [dict(line.split(": ", 1) for line in block.split("\n"))
              for block in response.text.strip().split("\n\n")]
    names = [b["event"] for b in blocks]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_delta") == 8
    start = orjson.loads(blocks[0]["data"])["message"]
    output = orjson.loads(blocks[-2]["data"])["usage"]["output_tokens"]
    [fact] = gw.wait_metered(key["id"], 1)
    time.sleep(0.2)
    assert len(gw.metered(key["id"])) == 1
    used = start["usage"]
    read, written = used["cache_read_input_tokens"], used["cache_creation_input_tokens"]
    prompt = used["input_tokens"] + read + written
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens, fact.cache_write_tokens) == (
        prompt, output, read, written)
    assert fact.cost == expected_cost("sim-cache", prompt=prompt, output=output, cached=read, written=written)


def test_the_anthropic_sdk_creates_and_streams_messages_with_a_meterline_key(gw):
    key = new_key(gw)
    client = sdk(gw, key)
    answer = client.messages.create(model="sim", max_tokens=5, messages=HI)
    assert answer.model == "sim" and answer.content[0].text and answer.usage.output_tokens == 5
    with client.messages.stream(model="sim", max_tokens=4, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens == 4
    events = list(client.messages.create(model="sim", max_tokens=3, messages=HI, stream=True))
    assert events[-1].type == "message_stop"
    facts = gw.wait_metered(key["id"], 3)
    assert sorted(f.completion_tokens for f in facts) == [3, 4, 5]
    assert client.messages.count_tokens(model="sim", messages=HI).input_tokens > 0
    time.sleep(0.2)
    assert len(gw.metered(key["id"])) == 3, "counting tokens is not metered"


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_without_usage_is_metered_by_estimate(gw, stream):
    key = new_key(gw)
    assert post(gw, key, message("sim-quiet", stream=stream)).status_code == 200
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.usage_source is UsageSource.ESTIMATED and fact.prompt_tokens > 0
    assert fact.completion_tokens > 0 and fact.cost > 0


def test_the_job_header_is_carried_onto_the_fact_and_a_bad_one_refused_in_anthropics_shape(gw):
    key = new_key(gw)
    with gw.client(key["key"]) as api:  # a key of the team creates the team's job
        created = api.post("/api/jobs/create", json={"job_type": "summaries"})
        assert created.status_code in (200, 201), created.text
        job = created.json()["job_id"]
    headers = {"x-api-key": key["key"], "x-meterline-job": job}
    assert httpx.post(gw.v1 + "/messages", json=message(), headers=headers, timeout=30).status_code == 200
    assert gw.wait_metered(key["id"], 1)[0].job_id == job
    bad = httpx.post(gw.v1 + "/messages", json=message(), timeout=30,
                     headers={**headers, "x-meterline-job": "job-42"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    unknown = httpx.post(gw.v1 + "/messages", json=message(), timeout=30,
                         headers={**headers, "x-meterline-job": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_a_bearer_key_is_accepted_as_well_as_x_api_key(gw):
    key = new_key(gw)
    response = httpx.post(gw.v1 + "/messages", json=message(), timeout=30,
                          headers={"authorization": f"Bearer {key['key']}"})
    assert response.status_code == 200
    client = anthropic.Anthropic(base_url=gw.url, auth_token=key["key"], max_retries=0)
    assert client.messages.create(model="sim", max_tokens=2, messages=HI).usage.output_tokens == 2


def test_a_client_that_disconnects_mid_stream_is_still_metered(gw):
    key = new_key(gw)
    started = time.monotonic()
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", gw.v1 + "/messages", headers={"x-api-key": key["key"]},
            json={"model": "sim-drip", "max_tokens": 64, "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("data:") and "content_block_delta" in line
            if deltas == 3:
                break
    assert time.monotonic() - started < 1.5
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.client_disconnected and fact.stream and fact.status == 200
    assert 0 < fact.completion_tokens < DRIP_TOKENS and fact.prompt_tokens > 0 and fact.cost > 0


# ----- reservations --------------------------------------------------------------------------


def test_the_upstream_is_sent_the_cap_the_request_was_reserved_for(gw, sim):
    key = new_key(gw)
    assert post(gw, key, message(max_tokens=10**9)).status_code == 200
    assert sim.app.last_body["max_tokens"] == 64 and sim.app.last_body["model"] == "sim-model"


def test_a_large_max_tokens_cannot_pass_a_hard_cap_but_an_affordable_request_is_served(gw, sim):
    key = new_key(gw, budget_usd="0.0001", budget_mode="hard")
    assert post(gw, key, message(max_tokens=8)).status_code == 200
    calls = sim.app.requests
    body = anthropic_error(post(gw, key, message(max_tokens=10**9)), 429, "rate_limit_error")
    assert "key" in body["error"]["message"] and body["request_id"]
    assert sim.app.requests == calls


LARGE = "x" * 300_000


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": [{"type": "text", "text": LARGE}]}]},
    {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                "content": [{"type": "text", "text": LARGE}]}]}]},
    {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                                     "input": {"q": LARGE}}]}]},
    {"messages": HI, "system": [{"type": "text", "text": LARGE}]},
    {"messages": HI, "tools": [{"name": "f", "input_schema": {"description": LARGE}}]},
    {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": LARGE}]}]},
], ids=["text block", "tool result", "tool use", "system", "tool schema", "thinking block"])
def test_a_large_input_in_any_place_is_refused_by_a_ten_cent_hard_budget(gw, sim, body):
    key = new_key(gw, budget_usd="0.10", budget_mode="hard")
    calls = sim.app.requests
    anthropic_error(post(gw, key, {"model": "sim", "max_tokens": 4, **body}), 429, "rate_limit_error")
    assert sim.app.requests == calls and gw.metered(key["id"]) == []


def test_an_image_inside_a_tool_result_counts_as_an_image_where_a_hard_budget_must_hold(gw, sim):
    key = new_key(gw, budget_usd="1", budget_mode="hard")
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    body = {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [image]}]}]}
    error = anthropic_error(post(gw, key, {"model": "sim", "max_tokens": 4, **body}), 400,
                            "invalid_request_error")
    assert "max_image_tokens" in error["error"]["message"]
