"""The shapes an attacker tried, generated: deep nesting, typed content parts, tool schemas,
prompt and input arrays, extreme dates, odd ids and huge bodies never get a 5xx, and every
refusal is in the error shape (issue 9, "the fuzz test also sends the shapes above")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger", "scheduler"})
SHAPES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
OWNER = f"fuzz-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0) as sim, running_gateway(tmp_path_factory.mktemp("gw-shapes"),
                                                   sim_config(sim.base_url), roles=ROLES) as gateway:
        gateway.setup_user(OWNER)
        yield gateway


@pytest.fixture(scope="module", params=["no budget", "hard budget"])
def v1(request: pytest.FixtureRequest, gw: RunningGateway) -> Iterator[httpx.Client]:
    fields = {"budget_usd": "1000"} if request.param == "hard budget" else {}
    key = gw.issue_key(OWNER, models=["*"], **fields)["key"]
    with httpx.Client(base_url=gw.v1, timeout=60, headers={"authorization": f"Bearer {key}"}) as client:
        yield client


@pytest.fixture(scope="module")
def api(gw: RunningGateway) -> Iterator[httpx.Client]:
    with gw.client(ADMIN_TOKEN) as client:
        yield client


def refused_or_served(response: httpx.Response, sent: object) -> None:
    assert response.status_code < 500, (response.status_code, str(sent)[:300], response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert {"message", "type", "code"} <= set(error) and error["message"], error


def nested(depth: int, leaf: str = "x") -> bytes:
    """A JSON value nested `depth` levels deep, lists and objects alternating."""
    opened = "".join('{"a":' if i % 2 else "[" for i in range(depth))
    closed = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return f'{opened}"{leaf}"{closed}'.encode()


texts = st.one_of(st.text(max_size=40), st.integers(1, 300_000).map(lambda n: "word " * (n // 5)))
part_types = st.sampled_from(["text", "input_text", "image_url", "input_audio", "file", "image",
                              "video", "refusal", "no-such-type", ""])


@st.composite
def content_parts(draw: st.DrawFn) -> list:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(part_types)
        part = {"type": kind, "text": draw(texts)}
        if kind == "image_url":
            part["image_url"] = {"url": "data:image/png;base64," + "A" * draw(st.integers(0, 5000))}
        elif kind == "input_audio":
            part["input_audio"] = {"data": "UklGR" * draw(st.integers(0, 500)), "format": "wav"}
        elif kind == "file":
            part["file"] = {"file_data": "JVBER" * draw(st.integers(0, 500)), "filename": "a.pdf"}
        parts.append(part)
    return parts


schemas = st.recursive(st.sampled_from([{"type": "string"}, {"type": "integer"}, {}]),
                       lambda inner: st.dictionaries(st.sampled_from(["properties", "items", "anyOf", "x"]),
                                                     inner, max_size=3), max_leaves=8)


@st.composite
def chat_shapes(draw: st.DrawFn) -> dict:
    message = {"role": draw(st.sampled_from(["user", "system", "assistant", "tool", "developer"])),
               "content": draw(st.one_of(texts, content_parts(), st.none())),
               draw(st.sampled_from(["name", "type", "tool_call_id", "refusal"])): draw(texts)}
    body = {"model": "sim", "max_tokens": draw(st.integers(1, 64)), "messages": [message]}
    if draw(st.booleans()):
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": draw(schemas),
                                                           "description": draw(texts)}}]
    if draw(st.booleans()):
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "s", "schema": draw(schemas)}}
    if draw(st.booleans()):
        body["stream"] = True
    return body


@st.composite
def prompt_shapes(draw: st.DrawFn) -> tuple[str, dict]:
    items = st.one_of(texts, st.lists(st.integers(0, 2**31), max_size=50))
    value = draw(st.one_of(texts, st.lists(items, min_size=1, max_size=4),
                           st.lists(st.integers(0, 2**31), min_size=1, max_size=200)))
    if draw(st.booleans()):
        return "/embeddings", {"model": "sim-embed", "input": value}
    return "/completions", {"model": "sim", "prompt": value, "max_tokens": 8}


@SHAPES
@given(body=chat_shapes())
def test_chat_bodies_of_every_shape_are_served_or_refused_cleanly(v1, body):
    refused_or_served(v1.post("/chat/completions", json=body), body)


@SHAPES
@given(request=prompt_shapes())
def test_prompt_and_input_arrays_are_served_or_refused_cleanly(v1, request):
    path, body = request
    refused_or_served(v1.post(path, json=body), body)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(depth=st.integers(100, 2000), where=st.sampled_from(["metadata", "content", "prompt", "tools"]))
def test_deep_nesting_anywhere_is_a_clean_400(v1, depth, where):
    deep = nested(depth)
    if where == "prompt":
        raw = b'{"model":"sim","max_tokens":4,"prompt":' + deep + b"}"
        response = v1.post("/completions", content=raw)
    else:
        value = {"metadata": b'"metadata":' + deep, "content": b'"content":"hi"',
                 "tools": b'"tools":' + deep}[where]
        message = (b'{"role":"user","content":' + deep + b"}") if where == "content" else \
            b'{"role":"user","content":"hi"}'
        raw = b'{"model":"sim","max_tokens":4,"messages":[' + message + b"]," + value + b"}"
        response = v1.post("/chat/completions", content=raw)
    refused_or_served(response, raw[:100])
    if depth > 300:
        assert response.status_code == 400


dates = st.one_of(
    st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1970-01-01",
                     "2262-04-11T23:47:16.854775807", "-1", "nan", "2024-02-30", "", "now",
                     "+275760-09-13T00:00:00Z", "2024-01-01T00:00:00+99:00", "99999999999999"]),
    st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30))


@SHAPES
@given(start=dates, end=dates)
def test_any_dates_on_usage_are_answered_or_refused_cleanly(api, start, end):
    refused_or_served(api.get("/api/usage", params={"from": start, "to": end, "user_id": OWNER}),
                      (start, end))


@SHAPES
@given(expires=dates)
def test_any_expiry_on_a_new_key_is_answered_or_refused_cleanly(api, expires):
    body = {"name": "fuzz", "models": ["sim"], "user_id": OWNER, "expires_at": expires}
    refused_or_served(api.post("/api/keys", json=body), body)


ids = st.one_of(st.text(max_size=140), st.sampled_from(["x/y", "a\x00b", "\u202eevil", "john@acme.com",
                                                        "../../etc", "%2F", " ", "a" * 129]))


@SHAPES
@given(user_id=ids, team_id=ids)
def test_any_ids_for_users_and_teams_are_answered_or_refused_cleanly(api, user_id, team_id):
    team = api.post("/api/admin/teams", json={"team_id": team_id, "name": "t"})
    refused_or_served(team, team_id)
    user = api.post("/api/admin/users", json={"user_id": user_id})
    refused_or_served(user, user_id)
    if user.status_code == 201:
        refused_or_served(api.post(f"/api/admin/users/{user_id}/tokens"), user_id)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/keys", "/api/admin/users"])
def test_a_body_past_the_cap_is_a_413_wherever_it_is_sent(gw, path):
    huge = b'{"model":"sim","x":"' + b"a" * (2 * 1024 * 1024) + b'"}'
    token = gw.issue_key(OWNER, models=["sim"])["key"] if path.startswith("/v1") else ADMIN_TOKEN
    response = httpx.post(gw.url + path, content=huge, timeout=60,
                          headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert orjson.loads(response.content)["error"]["message"]
