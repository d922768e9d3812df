"""An attacker's pass over /v1/responses and /v1/messages (issue 15), each hole a test:

- toward an upstream that keeps Responses state, a response id opens only for the key it was
  given (sealed with an HMAC of the key): another key's id, a raw or tampered one is a 404 and
  never reaches the upstream; conversations and item references, which no key owns, are 400s,
  and so is `background`, whose answer would be generated where nothing meters it;
- a model server's usage is not taken on trust: counts that are not integers from 0 to 2**31-1
  are malformed (estimated instead), an output below what the stream was seen to generate is
  raised to it, and under a hard budget nothing past the reservation is billed (a million cache
  reads reported for "hi" passed a $1 cap by itself), also for a burst of concurrent requests.

Client disconnects, server-run tools, `n`, odd names and stream flags, count_tokens:
test_responses_messages_input_attacks.py.

Models and fixtures: tests/support/api_models.py, tests/support/api_gateway.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from domain.quota_policy import Scope
from domain.usage import UsageSource
from tests.support.api_attacks import BODIES, LIES, events_of, metered_alone, post, reporting
from tests.support.api_models import expected_cost, new_key
from tests.support.gateway import openai_error

pytest_plugins = ["tests.support.api_gateway"]  # fixtures: sims, sim, gw

# ----- stored responses on an upstream that keeps state --------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_id_opens_only_for_the_key_it_was_given(gw, sim, stream):
    owner, stranger = new_key(gw), new_key(gw)
    body = {"model": "sim-stateful", "input": "remember: the code is 1234", "stream": stream}
    answer = post(gw, owner, "/responses", body)
    upstream_id = sim.app.requests  # the simulator's ids are resp_sim-<its request count>
    rid = events_of(answer)[-1]["response"]["id"] if stream else answer.json()["id"]
    assert rid.startswith(f"resp_sim-{upstream_id}_ml") and len(rid) > len(f"resp_sim-{upstream_id}") + 20

    calls = sim.app.requests
    for other, sent in [(stranger, rid), (owner, f"resp_sim-{upstream_id}"), (owner, rid[:-1] + "x"),
                        (owner, f"resp_sim-{upstream_id + 1}" + rid[rid.rindex("_ml"):])]:
        error = openai_error(post(gw, other, "/responses", {**body, "previous_response_id": sent}), 404,
                             "response_not_found")
        assert error["param"] == "previous_response_id" and "1234" not in error["message"]
    for method in ("GET", "DELETE"):
        retrieved = httpx.request(method, f"{gw.v1}/responses/{rid}", headers={"x-api-key": stranger["key"]})
        openai_error(retrieved, 404, "response_not_found")
    assert sim.app.requests == calls and gw.metered(stranger["id"]) == []

    chained = post(gw, owner, "/responses", {**body, "previous_response_id": rid, "stream": False})
    assert chained.status_code == 200
    assert sim.app.last_body["previous_response_id"] == f"resp_sim-{upstream_id}"
    assert chained.json()["previous_response_id"] == rid  # named as the key knows it


@pytest.mark.parametrize("fields", [{"conversation": "conv_of_someone"},
                                    {"input": [{"type": "item_reference", "id": "msg_of_someone"}]},
                                    {"background": True}, {"background": True, "stream": True}])
def test_state_no_key_owns_and_unmeterable_work_are_refused_toward_an_upstream_that_keeps_state(
        gw, sim, fields):
    # background: its answer is generated after the request, where nothing meters it
    calls = sim.app.requests
    body = {"model": "sim-stateful", "input": "hi", **fields}
    error = openai_error(post(gw, new_key(gw), "/responses", body), 400, "stateful_request_not_supported")
    assert error["param"] in ("conversation", "input", "background") and sim.app.requests == calls


def test_a_keys_own_previous_response_still_cannot_be_held_by_a_hard_budget(gw, sim):
    key = new_key(gw, budget_usd="1", budget_mode="hard")
    soft = new_key(gw)
    rid = post(gw, soft, "/responses", {"model": "sim-stateful", "input": "hi"}).json()["id"]
    openai_error(post(gw, key, "/responses", {"model": "sim-stateful", "input": "hi",
                                              "previous_response_id": rid}), 404, "response_not_found")
    own = post(gw, key, "/responses", {"model": "sim-stateful", "input": "hi"}).json()["id"]
    error = openai_error(post(gw, key, "/responses", {"model": "sim-stateful", "input": "hi",
                                                      "previous_response_id": own}), 400, "unbounded_input")
    assert error["param"] == "previous_response_id"


# ----- a model server's usage is not taken on trust --------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "usage"), [
    ("/responses", {"input_tokens": 2**62, "output_tokens": 5}),
    ("/responses", {"input_tokens": 5, "output_tokens": 2**31}),
    ("/responses", {"input_tokens": -5, "output_tokens": 5}),
    ("/responses", {"input_tokens": 5.0, "output_tokens": 5}),
    ("/responses", {"input_tokens": 5, "output_tokens": 5,
                    "output_tokens_details": {"reasoning_tokens": -1}}),
    ("/messages", {"input_tokens": 3, "output_tokens": 2**62}),
    ("/messages", {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": -1}),
    ("/messages", {"input_tokens": 3, "output_tokens": "5"}),
])
def test_token_counts_that_are_not_counts_are_estimated_not_billed(gw, sim, path, usage, stream):
    key = new_key(gw)
    with reporting(sim, usage):
        assert post(gw, key, path, {**BODIES[path], "stream": stream}).status_code == 200
    fact = metered_alone(gw, key)
    # a Messages stream whose message_start held a count keeps that, with its deltas as output
    assert fact.usage_source is UsageSource.ESTIMATED or (
        path == "/messages" and stream and (fact.prompt_tokens, fact.completion_tokens) == (3, 16))
    assert 0 < fact.prompt_tokens < 100 and 0 < fact.completion_tokens < 100 and 0 < fact.cost < 10**6


@pytest.mark.parametrize("path", sorted(BODIES))
def test_an_output_below_what_was_streamed_is_raised_to_it(gw, sim, path):
    key = new_key(gw)
    whole_key = new_key(gw)
    with reporting(sim, {"input_tokens": 3, "output_tokens": 0}):
        events = events_of(post(gw, key, path, {**BODIES[path], "stream": True}))
        assert post(gw, whole_key, path, BODIES[path]).status_code == 200
    deltas = sum(e["type"] in ("response.output_text.delta", "content_block_delta") for e in events)
    assert deltas == 16
    fact = metered_alone(gw, key)
    assert (fact.prompt_tokens, fact.completion_tokens) == (3, deltas)
    assert fact.cost == expected_cost("sim", prompt=3, output=deltas)
    assert metered_alone(gw, whole_key).completion_tokens == 1  # an answer with text: one token at least


def test_a_messages_stream_without_an_output_count_is_billed_its_deltas(gw, sim):
    key = new_key(gw)
    with reporting(sim, {"input_tokens": 3}):  # message_delta comes with "usage": {}
        events_of(post(gw, key, "/messages", {**BODIES["/messages"], "stream": True}))
    assert metered_alone(gw, key).completion_tokens == 16


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_hard_budget_is_billed_no_more_than_the_reservation_whatever_the_upstream_reports(
        gw, sim, path, stream):
    capped, soft = new_key(gw, budget_usd="1", budget_mode="hard"), new_key(gw)
    with reporting(sim, LIES[path]):
        for key in (capped, soft):
            assert post(gw, key, path, {**BODIES[path], "stream": stream}).status_code == 200
    fact = metered_alone(gw, capped)
    # at most ~40 prompt tokens (one per byte, with markers) and the 16 the upstream was sent
    assert fact.prompt_tokens <= 40 and fact.completion_tokens <= 16 and fact.cost <= 40_000 + 16 * 2_000
    assert metered_alone(gw, soft).cost > 10**9  # no hard cap to hold: billed as reported


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", sorted(BODIES))
def test_an_answer_without_usage_is_estimated_within_the_reservation_under_a_hard_budget(gw, path, stream):
    # 16 filler words are ~90 bytes: the estimate (bytes / 4) said 23 tokens of a 16-token cap
    capped, soft = new_key(gw, budget_usd="1", budget_mode="hard"), new_key(gw)
    quiet = {**BODIES[path], "model": "sim-quiet", "stream": stream}
    for key in (capped, soft):
        assert post(gw, key, path, quiet).status_code == 200
    fact, free = metered_alone(gw, capped), metered_alone(gw, soft)
    assert fact.usage_source is UsageSource.ESTIMATED and fact.completion_tokens == 16
    assert free.completion_tokens > 16


def test_a_burst_against_a_hard_cap_through_both_apis_never_settles_past_it(gw, sim):
    cap = 1_000_000  # $0.001: a handful of requests' worst cases
    key = new_key(gw, budget_usd="0.001", budget_mode="hard")
    calls = [(path, stream) for path in BODIES for stream in (False, True)] * 8

    def call(args: tuple[str, bool]) -> int:
        path, stream = args
        response = post(gw, key, path, {**BODIES[path], "stream": stream})
        if response.status_code != 200:
            body = response.json()
            assert response.status_code == 429, response.text
            assert body["error"]["type"] == "rate_limit_error" if path == "/messages" \
                else body["error"]["code"] == "insufficient_quota"
        return response.status_code

    with reporting(sim, LIES["/messages"]), ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, calls))
    served = statuses.count(200)
    assert served >= 4, statuses
    facts = gw.wait_metered(key["id"], served)
    assert sum(f.requests for f in facts) == served
    assert sum(f.cost for f in facts) <= cap
    assert gw.system.ledger.budget(Scope.KEY, key["id"]).period_spent <= cap
