"""/v1/responses and /v1/messages under generated input (issue 15): bodies of every shape,
random JSON, deep nesting and bodies past the cap are served or refused cleanly, never a 5xx,
and every refusal is in the route's error shape (OpenAI's for Responses, Anthropic's for
Messages), under no budget and under a hard one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.simulator.server import Simulator
from tests.support.api_models import api_config
from tests.support.gateway import RunningGateway, running_gateway

ROLES = frozenset({"gateway", "ledger", "scheduler"})
SHAPES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
OWNER = f"fuzz-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-api-shapes"),
                                                   api_config(sim.base_url, sim.base_url),
                                                   roles=ROLES) as gateway:
        gateway.setup_user(OWNER)
        yield gateway


@pytest.fixture(scope="module", params=["no budget", "hard budget"])
def v1(request: pytest.FixtureRequest, gw: RunningGateway) -> Iterator[httpx.Client]:
    fields = {"budget_usd": "1000"} if request.param == "hard budget" else {}
    key = gw.issue_key(OWNER, models=["*"], **fields)["key"]
    with httpx.Client(base_url=gw.v1, timeout=60, headers={"x-api-key": key}) as client:
        yield client


def refused_or_served(response: httpx.Response, path: str, sent: object) -> None:
    assert response.status_code < 500, (response.status_code, str(sent)[:300], response.text[:300])
    if response.status_code < 400:
        return
    body = response.json()
    if path == "/messages":
        assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"], body
    else:
        assert {"message", "type", "code"} <= set(body["error"]) and body["error"]["message"], body


text = st.text(max_size=30) | st.integers(1, 50_000).map(lambda n: "word " * (n // 5))
leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False) | text)
json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
model = st.sampled_from(["sim", "sim-cache", "sim-chat", "sim-stateful", "sim-embed", "nope"]) | json_value
part_types = st.sampled_from(["text", "input_text", "image", "input_image", "tool_result", "tool_use",
                              "document", "thinking", "function_call_output", "file"])
parts = st.fixed_dictionaries({"type": part_types}, optional={
    "text": text, "content": json_value, "source": json_value, "image_url": json_value,
    "input": json_value, "output": json_value})
items = st.fixed_dictionaries({}, optional={"role": json_value, "type": part_types | json_value,
                                            "content": text | st.lists(parts | json_value, max_size=3)})
responses_bodies = st.fixed_dictionaries({"model": model}, optional={
    "input": text | st.lists(items | json_value, max_size=4) | json_value, "instructions": json_value,
    "tools": json_value, "max_output_tokens": st.integers(-5, 10**12) | json_value,
    "stream": st.booleans() | json_value, "store": json_value, "previous_response_id": json_value,
    "background": json_value, "metadata": json_value, "user": json_value})
messages_bodies = st.fixed_dictionaries({"model": model}, optional={
    "messages": st.lists(items | json_value, max_size=4) | json_value, "system": json_value,
    "tools": json_value, "max_tokens": st.integers(-5, 10**12) | json_value,
    "stream": st.booleans() | json_value, "metadata": json_value, "stop_sequences": json_value})


@SHAPES
@given(body=responses_bodies)
def test_responses_bodies_of_every_shape_are_served_or_refused_cleanly(v1, body):
    refused_or_served(v1.post("/responses", json=body), "/responses", body)


@SHAPES
@given(body=messages_bodies)
def test_messages_bodies_of_every_shape_are_served_or_refused_cleanly(v1, body):
    refused_or_served(v1.post("/messages", json=body), "/messages", body)


@SHAPES
@given(value=json_value, path=st.sampled_from(["/responses", "/messages", "/messages/count_tokens"]))
def test_any_json_value_as_a_body_is_refused_cleanly(v1, value, path):
    refused_or_served(v1.post(path, content=orjson.dumps(value)), path.removesuffix("/count_tokens"), value)


def nested(depth: int) -> bytes:
    opened = "".join('{"a":' if i % 2 else "[" for i in range(depth))
    closed = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return f'{opened}"x"{closed}'.encode()


@pytest.mark.parametrize(("path", "prefix"), [
    ("/responses", b'{"model":"sim","input":'),
    ("/responses", b'{"model":"sim","input":"hi","tools":'),
    ("/messages", b'{"model":"sim","max_tokens":4,"messages":[{"role":"user","content":'),
    ("/messages", b'{"model":"sim","max_tokens":4,"messages":[],"system":'),
])
@pytest.mark.parametrize("depth", [100, 2_000])
def test_deep_nesting_anywhere_is_a_clean_400(v1, path, prefix, depth):
    raw = prefix + nested(depth) + (b"}]}" if prefix.endswith(b"content\":") else b"}")
    response = v1.post(path, content=raw)
    refused_or_served(response, path, raw[:80])
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/messages", "/v1/messages/count_tokens"])
def test_a_body_past_the_cap_is_a_413_in_the_routes_shape(gw, path):
    huge = b'{"model":"sim","x":"' + b"a" * (2 * 1024 * 1024) + b'"}'
    key = gw.issue_key(OWNER, models=["sim"])["key"]
    response = httpx.post(gw.url + path, content=huge, timeout=60,
                          headers={"x-api-key": key, "content-type": "application/json"})
    assert response.status_code == 413
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "request_too_large", body
    else:
        assert body["error"]["code"] == "request_too_large"
