"""The official openai SDK's Responses API and the official anthropic SDK's Messages API
against `meterline up` (its own processes, as a user runs it) in front of the real Gemma 3
270M model (issue 15).

Only the base URL and the key differ from calling the model server directly. Each request is
metered exactly once with the usage the model server reported, at the exact cost; refusals
are each SDK's own exception classes. Assertions are on structure and token accounting, never
on the words. Output is kept to a few tokens (~40 tokens/s on 2 cores).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from domain.pricing import Usage
from domain.usage import RequestMetered, UsageSource
from infra.demo.demo_config import DEMO_TOML
from tests.support.up_gateway import UpGateway, meterline_up

pytest_plugins = ["tests.support.upstreams"]  # fixture: demo_model
pytestmark = pytest.mark.model

CHAT = "gemma-3-270m"
MAX_TOKENS = 6
QUESTION = "Name one colour of the sky."
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def gw(demo_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpGateway]:
    config = DEMO_TOML.format(url=demo_model.base_url)
    with meterline_up(tmp_path_factory.mktemp("up-e2e-apis"), config) as up:
        up.setup_user("dev")
        yield up


def openai_sdk(gw: UpGateway, key: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0, timeout=120)


def anthropic_sdk(gw: UpGateway, key: dict) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key["key"], max_retries=0, timeout=120)


def metered_once(gw: UpGateway, key: dict) -> RequestMetered:
    """The key's one fact, checked to stay one, with its cost exactly the price book's."""
    [fact] = gw.wait_metered(key["id"], 1, timeout_s=30)
    time.sleep(0.3)
    assert len(gw.metered(key["id"])) == 1, "metered exactly once"
    assert (fact.status, fact.usage_source, fact.final, fact.requests) == (200, UsageSource.UPSTREAM, True, 1)
    price = gw.price_of(fact)
    usage = Usage(fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens, fact.cache_write_tokens,
                  fact.reasoning_tokens)
    assert fact.cost == price.cost(usage) > 0
    return fact


def test_a_response_is_answered_and_metered_with_the_usage_the_model_reported(gw):
    key = gw.issue_key("dev", models=[CHAT])
    r = openai_sdk(gw, key).responses.create(model=CHAT, input=QUESTION, max_output_tokens=MAX_TOKENS)
    assert r.object == "response" and r.model == CHAT and isinstance(r.output_text, str)
    assert r.usage.input_tokens > 0 and 1 <= r.usage.output_tokens <= MAX_TOKENS
    fact = metered_once(gw, key)
    assert fact.endpoint == "/v1/responses" and not fact.stream
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens) == (
        r.usage.input_tokens, r.usage.output_tokens, r.usage.input_tokens_details.cached_tokens)


def test_a_streamed_response_is_metered_from_response_completed(gw):
    key = gw.issue_key("dev", models=[CHAT])
    events = list(openai_sdk(gw, key).responses.create(model=CHAT, input=QUESTION,
                                                       max_output_tokens=MAX_TOKENS, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert any(e.type == "response.output_text.delta" for e in events)
    usage = events[-1].response.usage
    fact = metered_once(gw, key)
    assert fact.stream and fact.endpoint == "/v1/responses"
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens) == (
        usage.input_tokens, usage.output_tokens, usage.input_tokens_details.cached_tokens)


def test_a_message_is_answered_and_metered_with_cache_reads_in_the_prompt(gw):
    key = gw.issue_key("dev", models=[CHAT])
    m = anthropic_sdk(gw, key).messages.create(model=CHAT, max_tokens=MAX_TOKENS, messages=MESSAGES)
    assert m.type == "message" and m.model == CHAT and m.content and m.content[0].type == "text"
    assert 1 <= m.usage.output_tokens <= MAX_TOKENS
    read = m.usage.cache_read_input_tokens or 0
    written = m.usage.cache_creation_input_tokens or 0
    fact = metered_once(gw, key)
    assert fact.endpoint == "/v1/messages" and not fact.stream
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens, fact.cache_write_tokens) == (
        m.usage.input_tokens + read + written, m.usage.output_tokens, read, written)


def test_a_streamed_message_is_metered_from_message_start_and_message_delta(gw):
    key = gw.issue_key("dev", models=[CHAT])
    with anthropic_sdk(gw, key).messages.stream(model=CHAT, max_tokens=MAX_TOKENS, messages=MESSAGES) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert isinstance(text, str) and 1 <= final.usage.output_tokens <= MAX_TOKENS
    read = final.usage.cache_read_input_tokens or 0
    fact = metered_once(gw, key)
    assert fact.stream and fact.endpoint == "/v1/messages"
    assert (fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens) == (
        final.usage.input_tokens + read, final.usage.output_tokens, read)


def test_a_raw_message_stream_ends_with_message_stop(gw):
    key = gw.issue_key("dev", models=[CHAT])
    events = list(anthropic_sdk(gw, key).messages.create(model=CHAT, max_tokens=MAX_TOKENS,
                                                         messages=MESSAGES, stream=True))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert metered_once(gw, key).completion_tokens >= 1


def test_count_tokens_is_answered_and_not_billed(gw):
    key = gw.issue_key("dev", models=[CHAT])
    counted = anthropic_sdk(gw, key).messages.count_tokens(model=CHAT, messages=MESSAGES)
    assert counted.input_tokens > 0
    time.sleep(0.3)
    assert gw.metered(key["id"]) == []


def test_refusals_are_each_sdks_own_exceptions(gw):
    stranger = {"key": "sk-ml-unknown"}
    with pytest.raises(openai.AuthenticationError):
        openai_sdk(gw, stranger).responses.create(model=CHAT, input="x", max_output_tokens=1)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_sdk(gw, stranger).messages.create(model=CHAT, max_tokens=1, messages=MESSAGES)
    poor = gw.issue_key("dev", models=[CHAT], budget_usd="0.000001", budget_mode="hard")
    with pytest.raises(openai.RateLimitError) as limited:
        openai_sdk(gw, poor).responses.create(model=CHAT, input=QUESTION, max_output_tokens=200)
    assert limited.value.code == "insufficient_quota" and "key" in limited.value.message
    with pytest.raises(anthropic.RateLimitError):
        anthropic_sdk(gw, poor).messages.create(model=CHAT, max_tokens=200, messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as stateful:
        openai_sdk(gw, poor).responses.create(model=CHAT, input="x", previous_response_id="resp_1")
    assert stateful.value.code == "stateful_request_not_supported"
    with pytest.raises(openai.NotFoundError):
        openai_sdk(gw, poor).responses.retrieve("resp_1")
    assert gw.metered(poor["id"]) == []


def test_a_client_that_leaves_a_message_stream_is_metered_for_what_was_generated(gw):
    key = gw.issue_key("dev", models=[CHAT])
    body = {"model": CHAT, "max_tokens": 64, "stream": True, "messages": MESSAGES}
    with httpx.Client(timeout=120) as client, client.stream(
            "POST", gw.v1 + "/messages", json=body, headers={"x-api-key": key["key"]}) as response:
        assert response.status_code == 200
        deltas = 0
        for line in response.iter_lines():
            deltas += line.startswith("data:") and "content_block_delta" in line
            if deltas == 2:
                break
    [fact] = gw.wait_metered(key["id"], 1, timeout_s=30)
    if fact.client_disconnected:  # the model may finish 64 tokens before the hang-up is seen
        assert 0 < fact.completion_tokens < 64 and fact.cost > 0


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_a_hard_budget_holds_against_a_burst_through_each_sdk(gw, api):
    limit = 20_000  # nano-USD: a few worst cases of a 4-token answer at $0.10 / $0.40 a million
    key = gw.issue_key("dev", models=[CHAT], budget_usd="0.00002", budget_mode="hard")

    def call(_: int) -> str:
        try:
            if api == "responses":
                openai_sdk(gw, key).responses.create(model=CHAT, input=QUESTION, max_output_tokens=4)
            else:
                anthropic_sdk(gw, key).messages.create(model=CHAT, max_tokens=4, messages=MESSAGES)
            return "served"
        except (openai.RateLimitError, anthropic.RateLimitError):
            return "refused"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(call, range(12)))
    assert "served" in outcomes and "refused" in outcomes, outcomes
    facts = gw.wait_metered(key["id"], outcomes.count("served"), timeout_s=30)
    assert sum(f.cost for f in facts) <= limit
