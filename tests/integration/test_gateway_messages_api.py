"""POST /v1/messages (Anthropic Messages) through the gateway on the simulator (issue 15):
metered with cache reads and cache creation at their prices, streamed, reserved at the
worst case, authenticated by x-api-key, and every error in Anthropic's shape, as the
Anthropic SDK's own exception classes. Models: tests/support/api_models.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import orjson
import pytest

from domain.quota_policy import Scope
from domain.usage import UsageSource
from testkit.simulator.server import Simulator
from tests.support.api_models import api_config, expected_cost
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, running_gateway

ROLES = frozenset({"gateway", "ledger", "scheduler"})
DRIP_TOKENS = 40
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[Simulator, Simulator]]:
    with Simulator(port=0) as sim, Simulator(port=0, completion_tokens=DRIP_TOKENS,
                                             chunk_delay_ms=50) as drip:
        yield sim, drip


@pytest.fixture(scope="module")
def sim(sims) -> Simulator:
    return sims[0]


@pytest.fixture(scope="module")
def gw(sims, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    sim, drip = sims
    with running_gateway(tmp_path_factory.mktemp("gw-messages"), api_config(sim.base_url, drip.base_url),
                         roles=ROLES) as gateway:
        yield gateway


def new_key(gw: RunningGateway, models: list[str] | None = None, **fields) -> dict:
    user = f"u-{uuid.uuid4().hex[:8]}"
    gw.setup_user(user, team_id=f"t-{uuid.uuid4().hex[:8]}")
    return gw.issue_key(user, models=models or ["*"], **fields)


def post(gw: RunningGateway, key: dict | None, body: dict, path: str = "/messages") -> httpx.Response:
    headers = {"anthropic-version": "2023-06-01"}
    if key is not None:
        headers["x-api-key"] = key["key"]
    return httpx.post(gw.v1 + path, json=body, headers=headers, timeout=60)


def sdk(gw: RunningGateway, key: dict | str) -> anthropic.Anthropic:
    secret = key if isinstance(key, str) else key["key"]
    return anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0)


def anthropic_error(response: httpx.Response, status: int, kind: str) -> dict:
    """Asserts an error in Anthropic's shape with this status and type; returns its error."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["type"] == "error" and set(body) <= {"type", "error", "request_id"}, body
    assert body["error"]["type"] == kind and body["error"]["message"], body
    return body


def message(model: str = "sim", **fields) -> dict:
    return {"model": model, "max_tokens": 8, "messages": HI, **fields}


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


# ----- errors in Anthropic's shape, as the SDK's exceptions ----------------------------------


def test_every_refusal_is_the_anthropic_sdks_own_exception(gw):
    key = new_key(gw, models=["sim"])
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gw, "sk-ml-unknown").messages.create(model="sim", max_tokens=2, messages=HI)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        sdk(gw, key).messages.create(model="sim-cache", max_tokens=2, messages=HI)
    assert "sim-cache" in str(denied.value)
    with pytest.raises(anthropic.NotFoundError):
        sdk(gw, new_key(gw)).messages.create(model="no-such-model", max_tokens=2, messages=HI)
    with pytest.raises(anthropic.BadRequestError):
        sdk(gw, key).messages.create(model="sim", max_tokens=0, messages=HI)
    poor = new_key(gw, budget_usd="0.00001", budget_mode="hard")
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk(gw, poor).messages.create(model="sim", max_tokens=64, messages=HI)
    assert limited.value.body["request_id"] == limited.value.response.headers["request-id"]
    with pytest.raises(anthropic.APIStatusError) as failed:
        sdk(gw, new_key(gw)).messages.create(model="sim-fails", max_tokens=2, messages=HI)
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"


@pytest.mark.parametrize(("key", "status", "kind"), [
    (None, 401, "authentication_error"), ("sk-ml-wrong", 401, "authentication_error")])
def test_a_missing_or_unknown_key_is_an_authentication_error(gw, key, status, kind):
    response = post(gw, {"key": key} if key else None, message())
    anthropic_error(response, status, kind)


def test_a_missing_max_tokens_is_a_clear_400(gw, sim):
    calls = sim.app.requests
    body = anthropic_error(post(gw, new_key(gw), {"model": "sim", "messages": HI}), 400,
                           "invalid_request_error")
    assert "max_tokens" in body["error"]["message"] and sim.app.requests == calls


def test_a_model_whose_upstream_does_not_speak_messages_is_a_400_naming_what_it_offers(gw):
    body = anthropic_error(post(gw, new_key(gw), message("sim-chat")), 400, "invalid_request_error")
    assert "'sim-chat'" in body["error"]["message"] and "/v1/chat/completions" in body["error"]["message"]


def test_the_rpm_limit_is_a_rate_limit_error_with_retry_after(gw):
    key = new_key(gw, rpm_limit=1)
    assert post(gw, key, message()).status_code == 200
    response = post(gw, key, message())
    anthropic_error(response, 429, "rate_limit_error")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("body", [
    {"model": "sim", "max_tokens": 4},
    {"model": "sim", "max_tokens": 4, "messages": "hi"},
    {"model": "sim", "max_tokens": 4, "messages": ["hi"]},
    {"model": "sim", "max_tokens": "4", "messages": HI},
    {"model": "sim", "max_tokens": 4, "messages": HI, "system": 5},
    {"model": "sim", "max_tokens": 4, "messages": HI, "tools": "f"},
    {"model": "sim", "max_tokens": 4, "messages": HI, "stream": 1},
    {"max_tokens": 4, "messages": HI},
])
def test_a_malformed_request_is_a_400_that_never_reaches_the_model_server(gw, sim, body):
    calls = sim.app.requests
    anthropic_error(post(gw, new_key(gw), body), 400, "invalid_request_error")
    assert sim.app.requests == calls


def test_count_tokens_is_forwarded_scoped_and_not_billed(gw, sim):
    key = new_key(gw, models=["sim"])
    response = post(gw, key, {"model": "sim", "messages": HI}, "/messages/count_tokens")
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    anthropic_error(post(gw, key, {"model": "sim-cache", "messages": HI}, "/messages/count_tokens"),
                    403, "permission_error")
    anthropic_error(post(gw, None, {"model": "sim", "messages": HI}, "/messages/count_tokens"),
                    401, "authentication_error")
    time.sleep(0.2)
    assert gw.metered(key["id"]) == []


def test_the_models_list_shows_the_apis_each_model_speaks(gw):
    with gw.client(new_key(gw)["key"]) as client:
        models = {m["id"]: m["apis"] for m in client.get("/v1/models").json()["data"]}
    assert "messages" in models["sim"] and "responses" in models["sim"]
    assert models["sim-chat"] == ["chat", "completions", "embeddings"]
    with gw.client(ADMIN_TOKEN) as admin:
        assert admin.get("/v1/models").status_code == 401  # an admin token is not an API key
