"""The attacker's pass over /v1/responses and /v1/messages, continued
(test_responses_messages_attacks.py has the stored responses and the usage a model server reports):

- a Messages stream the client leaves is billed message_start's input count, cache reads and
  writes included, not an estimate of the prompt's text;
- tools the model server runs itself (web search, MCP, code execution) bring in prompt text no
  bound holds, so a hard budget refuses them (400 unbounded_input) rather than clamp their bill;
- an `n` (no field of either API) no longer multiplies the reservation; odd model names are
  quoted short; `"stream": null` is served (OpenAI allows it), other non-booleans are 400s in
  the API's shape; count_tokens answers a count and nothing else, unbilled, rate-limited.
"""

from __future__ import annotations

import httpx
import pytest

from domain.usage import UsageSource
from tests.support.api_attacks import BODIES, LIES, metered_alone, post, reporting
from tests.support.api_models import HI, new_key

pytest_plugins = ["tests.support.api_gateway"]  # fixtures: sims, sim, gw


# ----- a client that leaves a Messages stream -------------------------------------------------


def test_a_client_leaving_a_messages_stream_is_billed_message_starts_input_and_cache(gw, sims):
    drip = sims[1]  # 40 tokens, 50 ms apart
    key = new_key(gw)
    usage = {"input_tokens": 7, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50,
             "output_tokens": 40}
    with reporting(drip, usage), httpx.Client(timeout=30) as client, client.stream(
            "POST", gw.v1 + "/messages", headers={"x-api-key": key["key"]},
            json={"model": "sim-drip", "max_tokens": 64, "messages": HI, "stream": True}) as response:
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("data:") and "content_block_delta" in line
            if deltas == 3:
                break
    fact = metered_alone(gw, key)
    assert fact.client_disconnected and fact.usage_source is UsageSource.UPSTREAM
    assert (fact.prompt_tokens, fact.cached_tokens, fact.cache_write_tokens) == (157, 100, 50)
    assert 3 <= fact.completion_tokens < 40


@pytest.mark.parametrize(("path", "fields"), [
    ("/responses", {"tools": [{"type": "web_search_preview"}]}),
    ("/responses", {"tools": [{"type": "function", "name": "f"}, {"type": "mcp", "server_url": "https://x"}]}),
    ("/messages", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    ("/messages", {"mcp_servers": [{"type": "url", "url": "https://x", "name": "x"}]}),
])
def test_tools_the_model_server_runs_cannot_be_held_by_a_hard_budget(gw, sim, path, fields):
    # their results join the prompt on the server's side: no bound, and clamping to one under-bills
    capped, soft = new_key(gw, budget_usd="1", budget_mode="hard"), new_key(gw)
    calls = sim.app.requests
    response = post(gw, capped, path, {**BODIES[path], **fields})
    assert response.status_code == 400 and "no upper bound" in response.text, response.text
    assert sim.app.requests == calls
    with reporting(sim, LIES[path]):
        assert post(gw, soft, path, {**BODIES[path], **fields}).status_code == 200
    assert metered_alone(gw, soft).cost > 10**9


@pytest.mark.parametrize("path", sorted(BODIES))
def test_an_n_these_apis_do_not_have_reserves_one_answer_and_is_not_forwarded(gw, sim, path):
    key = new_key(gw, budget_usd="0.0005", budget_mode="hard")  # ~3 worst cases, not 50
    response = post(gw, key, path, {**BODIES[path], "n": 50})
    assert response.status_code == 200, response.text
    assert "n" not in sim.app.last_body


# ----- odd input ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(BODIES))
def test_an_unknown_model_name_is_quoted_short_and_with_invisible_characters_escaped(gw, path):
    name = "sim\u202e\x00" + "x" * 200_000
    response = post(gw, new_key(gw), path, {**BODIES[path], "model": name})
    assert response.status_code == 404 and len(response.content) < 1_000, response.text[:300]
    message = response.json()["error"]["message"]
    assert "sim\\u202e\\u0000xxx" in message and "x" * 101 not in message and "\u202e" not in message
    stored = httpx.get(f"{gw.v1}/responses/resp_\u202e{'y' * 5_000}",
                       headers={"x-api-key": new_key(gw)["key"]})
    assert stored.status_code == 404 and len(stored.content) < 1_000 and "\u202e" not in stored.text


@pytest.mark.parametrize("path", sorted(BODIES))
@pytest.mark.parametrize("stream", ["true", 1, None, {}])
def test_a_stream_flag_that_is_not_a_boolean_is_a_400_in_the_apis_shape(gw, sim, path, stream):
    calls = sim.app.requests
    response = post(gw, new_key(gw), path, {**BODIES[path], "stream": stream})
    if stream is None:  # JSON null: the default, not streamed
        assert response.status_code == 200
        return
    assert response.status_code == 400 and "'stream' must be true or false" in response.text
    assert ("type" in response.json()) is (path == "/messages") and sim.app.requests == calls


def test_count_tokens_gives_a_count_and_nothing_else_unbilled_and_rate_limited(gw, sim):
    key = new_key(gw, rpm_limit=2)
    body = {"model": "sim", "messages": HI, "max_tokens": 4096, "stream": True}
    for _ in range(2):
        counted = post(gw, key, "/messages/count_tokens", body)
        assert counted.status_code == 200 and set(counted.json()) == {"input_tokens"}
    limited = post(gw, key, "/messages/count_tokens", body)
    assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limit_error"
    assert gw.metered(key["id"]) == []
