"""The two upstreams, seen through the official openai SDK: simulator and real model."""

from __future__ import annotations

import os
import time

import httpx
import openai
import pytest

from infra.demo.model_server import DemoModelServer, default_cache_dir, ensure_model_file
from testkit.loadgen import run_load

pytest_plugins = ["tests.support.upstreams"]  # fixtures: simulator, simulator_factory, demo_model

SYSTEM = {"role": "system", "content": "You are terse."}  # 14 bytes -> 4 tokens + 3
USER = {"role": "user", "content": "héllo"}  # 6 utf-8 bytes -> 2 tokens + 3


def client(base_url: str) -> openai.OpenAI:
    # No retries: an error knob must surface at once, not after the SDK's back-off.
    # A long timeout: on 2 busy cores the real model can drop to a few tokens per second.
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


# ----- simulator -----


def test_simulator_chat_usage_is_exactly_predictable(simulator):
    r = client(simulator.base_url).chat.completions.create(
        model="m", messages=[SYSTEM, USER], max_tokens=5)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (12, 5, 17)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "Lorem ipsum dolor sit amet"


def test_simulator_caps_completion_tokens_at_its_configured_n(simulator_factory):
    sim = simulator_factory(completion_tokens=7)
    r = client(sim.base_url).chat.completions.create(model="m", messages=[USER], max_tokens=100)
    assert r.usage.completion_tokens == 7
    assert r.choices[0].finish_reason == "stop"
    r = client(sim.base_url).chat.completions.create(model="m", messages=[USER])
    assert r.usage.completion_tokens == 7


def test_simulator_stream_ends_with_a_usage_chunk_when_asked(simulator):
    c = client(simulator.base_url)
    chunks = list(c.chat.completions.create(
        model="m", messages=[SYSTEM, USER], max_tokens=4, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 4)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Lorem ipsum dolor sit"
    plain = list(c.chat.completions.create(model="m", messages=[USER], stream=True))
    assert all(ch.usage is None for ch in plain)


def test_simulator_completions_count_prompt_bytes(simulator):
    c = client(simulator.base_url)
    r = c.completions.create(model="m", prompt="abcdefghi", max_tokens=3)  # 9 bytes -> 3
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 3)
    r = c.completions.create(model="m", prompt=["abcd", "ef"], max_tokens=2)
    assert r.usage.prompt_tokens == 2
    chunks = list(c.completions.create(model="m", prompt="abcd", max_tokens=2, stream=True,
                                       stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens == 3


def test_simulator_embeddings_have_usage_and_one_vector_per_input(simulator):
    r = client(simulator.base_url).embeddings.create(model="m", input=["a", "bbbbb"])
    assert r.usage.prompt_tokens == 3
    assert [len(d.embedding) for d in r.data] == [16, 16]


def test_simulator_request_knobs(simulator_factory):
    sim = simulator_factory(slow_s=0.3)
    c = client(sim.base_url)
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="sim-error", messages=[USER])
    with pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="sim-ratelimit", messages=[USER])
    assert c.chat.completions.create(model="sim-nousage", messages=[USER]).usage is None
    started = time.monotonic()
    c.chat.completions.create(model="sim-slow", messages=[USER])
    assert time.monotonic() - started >= 0.3
    assert "sim-model" in {m.id for m in c.models.list()}


def test_simulator_without_usage_omits_it_everywhere(simulator_factory):
    c = client(simulator_factory(usage=False).base_url)
    assert c.chat.completions.create(model="m", messages=[USER]).usage is None
    chunks = list(c.chat.completions.create(model="m", messages=[USER], stream=True,
                                            stream_options={"include_usage": True}))
    assert all(ch.usage is None for ch in chunks)


def test_simulator_fails_an_exact_fraction_of_requests(simulator_factory):
    c = client(simulator_factory(fail_rate=0.5).base_url)
    outcomes = []
    for _ in range(6):
        try:
            c.chat.completions.create(model="m", messages=[USER])
            outcomes.append("ok")
        except openai.InternalServerError:
            outcomes.append("500")
    assert outcomes == ["ok", "500"] * 3


def test_loadgen_drives_the_simulator_over_keep_alive(simulator):
    body = {"model": "m", "messages": [USER], "stream": True,
            "stream_options": {"include_usage": True}}
    stats = run_load(simulator.base_url + "/chat/completions", body, connections=8,
                     total_requests=400)
    assert (stats.requests, stats.ok) == (400, 400)
    assert simulator.app.requests == 400
    assert httpx.get(simulator.base_url.removesuffix("/v1") + "/health").status_code == 200


# ----- the real model -----


@pytest.mark.model
def test_model_chat_reports_positive_usage_within_max_tokens(demo_model):
    r = client(demo_model.base_url).chat.completions.create(
        model=demo_model.model_name, messages=[USER], max_tokens=8)
    assert isinstance(r.usage.prompt_tokens, int) and r.usage.prompt_tokens > 0
    assert isinstance(r.usage.completion_tokens, int) and 0 < r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.model
def test_model_stream_ends_with_a_usage_chunk(demo_model):
    chunks = list(client(demo_model.base_url).chat.completions.create(
        model="any-name-is-ignored", messages=[SYSTEM, USER], max_tokens=8, stream=True,
        stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens > 0 and 0 < last.usage.completion_tokens <= 8


@pytest.mark.model
def test_model_completions_and_embeddings_report_usage(demo_model):
    c = client(demo_model.base_url)
    r = c.completions.create(model=demo_model.model_name, prompt="Once upon a time",
                             max_tokens=6)
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 6
    e = c.embeddings.create(model=demo_model.model_name, input=["alpha", "beta gamma"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0
    assert e.usage.prompt_tokens > 0


@pytest.mark.model
def test_model_renders_chat_as_question_answer_and_stops_before_the_next_question(demo_model):
    root = demo_model.base_url.removesuffix("/v1")
    rendered = httpx.post(root + "/apply-template", json={"messages": [USER]}).json()
    assert rendered["prompt"] == "Question: héllo\nAnswer:"
    # A few-shot prompt invites the model to write the next "Question:" itself.
    shots = "".join(f"Question: {q}?\nAnswer: {q}\n" for q in "abcdef") + "Question: g?\nAnswer:"
    r = client(demo_model.base_url).completions.create(
        model=demo_model.model_name, prompt=shots, max_tokens=24, temperature=0)
    assert "\nQuestion:" not in r.choices[0].text


@pytest.mark.model
def test_model_server_leaves_no_process_behind_and_reuses_the_model_file(demo_model):
    started = time.monotonic()
    assert ensure_model_file(default_cache_dir()).stat().st_size > 100_000_000
    assert time.monotonic() - started < 0.5  # reused, not re-assembled
    server = DemoModelServer(default_cache_dir()).start()
    pid = server._proc.pid
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
