"""The official openai SDK against the gateway in front of the real Gemma 3 270M model.

Only the base URL (and the key) differ from calling the model directly. Assertions are on
structure and token accounting, never on the words: a 270M model's answers vary. Output is
kept to a few tokens; the model makes ~40 tokens/s on 2 cores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from domain.pricing import Usage
from domain.quota_policy import Scope
from domain.usage import UsageSource
from infra.demo.demo_config import demo_config
from infra.runner import ALL_ROLES
from tests.support.gateway import RunningGateway, running_gateway

pytest_plugins = ["tests.support.upstreams"]  # fixture: demo_model
pytestmark = pytest.mark.model

CHAT, EMBED = "gemma-3-270m", "gemma-3-270m-embed"
MAX_TOKENS = 8
QUESTION = [{"role": "user", "content": "Name one colour of the sky."}]


@pytest.fixture(scope="module")
def gw(demo_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with running_gateway(tmp_path_factory.mktemp("gw-e2e"), demo_config(demo_model.base_url),
                         roles=ALL_ROLES) as gateway:
        gateway.setup_user("dev")
        yield gateway


def sdk(gw: RunningGateway, key: dict) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key["key"], max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(gw: RunningGateway) -> openai.OpenAI:
    return sdk(gw, gw.issue_key("dev", models=[CHAT, EMBED]))


def test_chat_answers_with_usage_within_max_tokens_under_the_model_name_asked_for(client):
    r = client.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=MAX_TOKENS)
    assert r.object == "chat.completion"
    assert r.model == CHAT
    assert len(r.choices) == 1 and r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert 1 <= r.usage.completion_tokens <= MAX_TOKENS
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_a_stream_that_asks_for_usage_ends_with_a_usage_chunk(client):
    chunks = list(client.chat.completions.create(
        model=CHAT, messages=QUESTION, max_tokens=MAX_TOKENS, stream=True,
        stream_options={"include_usage": True}))
    assert len(chunks) >= 3
    assert all(c.object == "chat.completion.chunk" and c.model == CHAT for c in chunks)
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in body)
    assert sum(bool(c.choices and c.choices[0].delta.content) for c in body) >= 1
    assert last.usage.prompt_tokens > 0 and 1 <= last.usage.completion_tokens <= MAX_TOKENS


def test_a_stream_that_does_not_ask_for_usage_never_shows_it(client):
    chunks = list(client.chat.completions.create(
        model=CHAT, messages=QUESTION, max_tokens=MAX_TOKENS, stream=True))
    assert len(chunks) >= 2
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "no usage-only chunk reaches this client"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_completions_answer_with_usage(client):
    r = client.completions.create(model=CHAT, prompt="Question: What is 2 + 2?\nAnswer:",
                                  max_tokens=MAX_TOKENS)
    assert r.object == "text_completion" and r.model == CHAT
    assert isinstance(r.choices[0].text, str)
    assert r.usage.prompt_tokens > 0 and 1 <= r.usage.completion_tokens <= MAX_TOKENS


def test_embeddings_answer_one_vector_per_input(client):
    r = client.embeddings.create(model=EMBED, input=["the sky", "the sea", "a tree"])
    assert r.model == EMBED
    assert [d.index for d in r.data] == [0, 1, 2]
    dims = {len(d.embedding) for d in r.data}
    assert len(dims) == 1 and dims.pop() > 0
    assert r.usage.prompt_tokens > 0


def test_the_models_list_shows_only_the_keys_models(gw, client):
    assert sorted(m.id for m in client.models.list()) == [CHAT, EMBED]
    chat_only = sdk(gw, gw.issue_key("dev", models=[CHAT]))
    assert [m.id for m in chat_only.models.list()] == [CHAT]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat_only.embeddings.create(model=EMBED, input="x")
    assert refused.value.code == "model_not_allowed"


def test_a_wrong_key_is_an_authentication_error_for_the_sdk(gw):
    stranger = openai.OpenAI(base_url=gw.v1, api_key="sk-ml-unknown", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=1)


def test_the_ledger_records_exactly_the_tokens_the_client_saw(gw):
    key = gw.issue_key("dev", models=[CHAT, EMBED])
    c = sdk(gw, key)
    seen = []  # (endpoint, stream, prompt_tokens, completion_tokens) as the client saw them
    r = c.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=MAX_TOKENS)
    seen.append(("/v1/chat/completions", False, r.usage.prompt_tokens, r.usage.completion_tokens))
    last = list(c.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=MAX_TOKENS,
                                          stream=True, stream_options={"include_usage": True}))[-1]
    seen.append(("/v1/chat/completions", True, last.usage.prompt_tokens, last.usage.completion_tokens))
    r = c.completions.create(model=CHAT, prompt="Question: Name a fruit.\nAnswer:", max_tokens=MAX_TOKENS)
    seen.append(("/v1/completions", False, r.usage.prompt_tokens, r.usage.completion_tokens))
    r = c.embeddings.create(model=EMBED, input=["one", "two"])
    seen.append(("/v1/embeddings", False, r.usage.prompt_tokens, 0))
    hidden = list(c.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=MAX_TOKENS,
                                            stream=True))  # the client sees no usage here

    facts = sorted(gw.wait_metered(key["id"], 5, timeout_s=30), key=lambda f: f.occurred_at)
    assert len(facts) == 5
    assert [(f.endpoint, f.stream, f.prompt_tokens, f.completion_tokens) for f in facts[:4]] == seen
    assert facts[4].stream and facts[4].usage_source is UsageSource.UPSTREAM
    assert facts[4].prompt_tokens == seen[1][2]  # the same prompt as the other stream
    assert 1 <= facts[4].completion_tokens <= MAX_TOKENS
    assert len([ch for ch in hidden if ch.choices and ch.choices[0].delta.content]) <= MAX_TOKENS
    for fact in facts:
        assert (fact.status, fact.usage_source) == (200, UsageSource.UPSTREAM)
        assert not fact.client_disconnected
        price = gw.system.ctx.registry_view.model(fact.model).price_version(fact.price_version)
        assert fact.cost == price.cost(Usage(fact.prompt_tokens, fact.completion_tokens, fact.cached_tokens))
        assert fact.cost > 0
    assert {f.model for f in facts} == {CHAT, EMBED}
    assert gw.system.ledger.budget(Scope.KEY, key["id"]).period_spent == sum(f.cost for f in facts)


def test_usage_reported_to_the_user_adds_up_to_the_ledger(gw):
    token = gw.setup_user("ana", team_id="team-e2e")
    key = gw.issue_key("ana", models=[CHAT])
    c = sdk(gw, key)
    for _ in range(2):
        c.chat.completions.create(model=CHAT, messages=QUESTION, max_tokens=4)
    facts = gw.wait_metered(key["id"], 2, timeout_s=30)
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as ana:
        deadline = time.monotonic() + 15
        while (totals := ana.get("/api/usage").json()["totals"])["requests"] < 2:
            assert time.monotonic() < deadline, totals
            time.sleep(0.1)
    assert totals["requests"] == 2
    assert totals["prompt_tokens"] == sum(f.prompt_tokens for f in facts)
    assert totals["completion_tokens"] == sum(f.completion_tokens for f in facts)
