"""Issue 9, end to end: a hard budget holds whatever shape the prompt comes in, and deep JSON is a 400.

One gateway in front of the simulator: "sim" has no bounds for images, audio or files,
"sim-vision" (the same simulator) has them configured. Every test makes its own user and
team, so budgets set in one test hold no other test's requests.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest

from domain.quota_policy import Scope
from testkit.simulator.server import Simulator
from tests.support.gateway import (
    ADMIN_TOKEN,
    RunningGateway,
    add_models,
    openai_error,
    running_gateway,
    sim_config,
)

ROLES = frozenset({"gateway", "ledger", "scheduler"})
BOUNDS = {"max_image_tokens": 1_000, "max_audio_tokens": 500, "max_file_tokens": 5_000}
CENT = "0.01"  # 10 000 000 nano-USD: 10 000 prompt tokens of "sim" at $1.00 per million
BIG = "x" * 900_000  # ~225 000 tokens to the simulator, 900 000 to a one-byte-a-token tokenizer
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQ"
       "GAhKmMIQAAAABJRU5ErkJggg==")
MEDIA = {
    "image": {"type": "image_url", "image_url": {"url": PNG}},
    "audio": {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
    "file": {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x",
                                      "filename": "a.pdf"}},
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gw(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = add_models(sim_config(sim.base_url), {"sim-vision": "sim-model"})
    models = [dataclasses.replace(m, **BOUNDS) if m.name == "sim-vision" else m for m in config.models]
    with running_gateway(tmp_path_factory.mktemp("gw-shapes"), dataclasses.replace(config, models=models),
                         roles=ROLES) as gateway:
        yield gateway


def new_user(gw: RunningGateway) -> tuple[str, str]:
    user, team = f"u-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    gw.setup_user(user, team_id=team)
    return user, team


def new_key(gw: RunningGateway, **fields) -> dict:
    return gw.issue_key(new_user(gw)[0], models=["*"], **fields)


def set_budget(gw: RunningGateway, scope: str, scope_id: str, **policy) -> None:
    with gw.client(ADMIN_TOKEN) as admin:
        admin.put(f"/api/admin/budgets/{scope}/{scope_id}", json=policy).raise_for_status()


def post(gw: RunningGateway, key: dict, path: str, body: dict) -> httpx.Response:
    return httpx.post(gw.v1 + path, json=body, headers={"authorization": f"Bearer {key['key']}"},
                      timeout=60)


def chat(content, model: str = "sim", **fields) -> dict:
    return {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": content}], **fields}


def assert_not_served(gw: RunningGateway, sim: Simulator, key: dict, response: httpx.Response,
                      calls: int) -> None:
    assert response.status_code in (400, 429), (response.status_code, response.text[:300])
    openai_error(response, response.status_code)
    assert sim.app.requests == calls, "a refused request must not reach the model server"
    assert gw.metered(key["id"]) == []


# ----- a hard budget holds every shape --------------------------------------------------------


@pytest.mark.parametrize("model", ["sim", "sim-vision"])
def test_a_900_kB_text_in_a_part_typed_image_does_not_pass_a_one_cent_hard_budget(gw, sim, model):
    key = new_key(gw, budget_usd=CENT, budget_mode="hard")
    calls = sim.app.requests
    response = post(gw, key, "/chat/completions", chat([{"type": "image", "text": BIG}], model))
    assert_not_served(gw, sim, key, response, calls)
    if model == "sim-vision":  # the image is bounded, so it is the text that passes the budget
        openai_error(response, 429, "insufficient_quota")


LARGE_INPUTS = {
    "message name": ("/chat/completions", {"model": "sim", "messages": [
        {"role": "user", "content": "hi", "name": BIG}]}),
    "input_text part": ("/chat/completions", chat([{"type": "input_text", "text": BIG}])),
    "refusal part": ("/chat/completions", chat([{"type": "refusal", "refusal": BIG}])),
    "unknown part": ("/chat/completions", chat([{"type": "thinking", "thinking": BIG}])),
    "text beside an image": ("/chat/completions", chat([{**MEDIA["image"], "text": BIG}], "sim-vision")),
    "tool schema": ("/chat/completions", chat("hi", tools=[
        {"type": "function", "function": {"name": "f", "description": BIG}}])),
    "functions": ("/chat/completions", chat("hi", functions=[{"name": "f", "description": BIG}])),
    "response_format": ("/chat/completions", chat("hi", response_format={
        "type": "json_schema", "json_schema": {"name": "s", "schema": {"description": BIG}}})),
    "unknown top-level field": ("/chat/completions", chat("hi", documents=[{"text": BIG}])),
    "prompt array of strings": ("/completions", {"model": "sim", "prompt": ["a", BIG]}),
    "prompt of token ids": ("/completions", {"model": "sim", "prompt": [5] * 250_000}),
    "suffix": ("/completions", {"model": "sim", "prompt": "a", "suffix": BIG}),
    "embeddings input array": ("/embeddings", {"model": "sim-embed", "input": ["a", BIG]}),
    "embeddings token ids": ("/embeddings", {"model": "sim-embed", "input": [[5] * 250_000]}),
}


@pytest.mark.parametrize("shape", sorted(LARGE_INPUTS))
def test_a_large_input_in_any_shape_is_refused_by_a_one_cent_hard_budget(gw, sim, shape):
    # sim-embed costs $0.10 a million: 900 000 tokens are 9 cents, 250 000 ids 2.5 cents
    path, body = LARGE_INPUTS[shape]
    key = new_key(gw, budget_usd=CENT, budget_mode="hard")
    calls = sim.app.requests
    response = post(gw, key, path, body)
    assert_not_served(gw, sim, key, response, calls)
    openai_error(response, 429, "insufficient_quota")


# ----- media the bytes do not bound ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MEDIA))
@pytest.mark.parametrize(("scope", "mode"), [(Scope.KEY, "hard"), (Scope.USER, "grace"),
                                             (Scope.TEAM, "hard")])
def test_media_without_a_configured_bound_is_refused_under_a_hard_or_grace_budget_naming_the_field(
        gw, sim, kind, scope, mode):
    user, team = new_user(gw)
    key = gw.issue_key(user, models=["*"])
    set_budget(gw, str(scope), {Scope.KEY: key["id"], Scope.USER: user, Scope.TEAM: team}[scope],
               limit_usd="100", mode=mode)
    calls = sim.app.requests
    response = post(gw, key, "/chat/completions", chat([{"type": "text", "text": "what is it?"},
                                                        MEDIA[kind]]))
    error = openai_error(response, 400, "unbounded_input")
    assert f"max_{kind}_tokens" in error["message"]
    assert "'sim'" in error["message"] and f"{mode} budget" in error["message"]
    assert error["param"] == "messages"
    assert sim.app.requests == calls


@pytest.mark.parametrize("kind", sorted(MEDIA))
def test_media_without_a_configured_bound_is_served_under_a_soft_budget_or_none(gw, kind):
    unbudgeted = new_key(gw)
    soft = new_key(gw, budget_usd=CENT, budget_mode="soft")
    for key in (unbudgeted, soft):
        assert post(gw, key, "/chat/completions", chat([MEDIA[kind]])).status_code == 200


@pytest.mark.parametrize("kind", sorted(MEDIA))
def test_media_with_a_configured_bound_is_served_within_a_hard_budget(gw, kind):
    key = new_key(gw, budget_usd=CENT, budget_mode="hard")
    response = post(gw, key, "/chat/completions", chat([MEDIA[kind]], "sim-vision"))
    assert response.status_code == 200, response.text


def test_a_large_image_with_a_configured_bound_is_held_at_that_bound_not_at_its_size(gw):
    # 600 kB of base64 would be 600 000 tokens as text; the model counts at most 1 000
    key = new_key(gw, budget_usd=CENT, budget_mode="hard")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 600_000}}
    assert post(gw, key, "/chat/completions", chat([image], "sim-vision")).status_code == 200


# ----- deep nesting -------------------------------------------------------------------------


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


DEEP = {
    "metadata": ("/chat/completions", chat("hi", metadata={"a": nested(300)})),
    "content": ("/chat/completions", chat([{"type": "text", "text": "hi", "extra": nested(300)}])),
    "prompt": ("/completions", {"model": "sim", "prompt": nested(300)}),
    "tools": ("/chat/completions", chat("hi", tools=[{"type": "function", "function": {
        "name": "f", "parameters": nested(300)}}])),
}


def test_deeply_nested_json_is_a_400_that_neither_logs_a_traceback_nor_uses_the_rate_limit(
        gw, sim, caplog):
    key = new_key(gw, rpm_limit=1)
    calls = sim.app.requests
    with caplog.at_level(logging.ERROR):
        for field in sorted(DEEP):
            path, body = DEEP[field]
            error = openai_error(post(gw, key, path, body), 400, "invalid_json")
            assert "64 levels" in error["message"], (field, error)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert sim.app.requests == calls
    assert post(gw, key, "/chat/completions", chat("hi")).status_code == 200


def test_nesting_up_to_the_limit_is_served(gw):
    # the body, an object and its list: 64 levels (not under `metadata`: tags are strings)
    body = chat("hi", x_nested={"a": nested(62)})
    assert post(gw, new_key(gw), "/chat/completions", body).status_code == 200
