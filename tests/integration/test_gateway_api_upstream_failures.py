"""What upstream failures become on /v1/responses and /v1/messages (issue 15): the chat path's
502 / 504 in each API's error shape, an upstream's own 4xx passed on in that shape, and a
stream that fails midway ending with an error event after being metered.

Models: sim (every API), sim-slow (3 s, past the 1 s upstream timeout), sim-error (HTTP 500),
sim-ratelimit (an upstream 429), dead (nobody listens), sim-stall (a simulator whose events
come 1.5 s apart, the first too: the stream's head arrives, then nothing within the timeout).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from testkit.simulator.server import Simulator
from tests.support.api_models import ALL_APIS
from tests.support.gateway import RunningGateway, add_models, free_port, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger", "scheduler"})
BODIES = {"/responses": {"input": "hello", "max_output_tokens": 8},
          "/messages": {"max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with Simulator(port=0, slow_s=3.0) as sim, Simulator(port=0, chunk_delay_ms=1_500) as stall:
        config = add_models(sim_config(sim.base_url, apis=ALL_APIS), {
            "sim-slow": "sim-slow", "sim-error": "sim-error", "sim-ratelimit": "sim-ratelimit",
            "dead": (f"http://127.0.0.1:{free_port()}/v1", "dead"),
            "sim-stall": (stall.base_url, "sim-model")})
        with running_gateway(tmp_path_factory.mktemp("gw-api-failures"), config, roles=ROLES,
                             upstream_timeout_s=1.0) as gateway:
            gateway.setup_user("alice")
            yield gateway


def call(gw: RunningGateway, key: dict, path: str, model: str, stream: bool = False) -> httpx.Response:
    return httpx.post(gw.v1 + path, json={"model": model, **BODIES[path], "stream": stream},
                      headers={"x-api-key": key["key"]}, timeout=30)


def error_of(response: httpx.Response, path: str, status: int) -> tuple[str, str]:
    """(type or code, message) of an error in the route's shape."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    if path == "/messages":
        assert body["type"] == "error", body
        return body["error"]["type"], body["error"]["message"]
    return body["error"]["code"], body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "expected"), [("/responses", "upstream_error"), ("/messages", "api_error")])
def test_an_upstream_server_error_or_an_unreachable_one_is_a_502_metered_at_no_cost(gw, path, expected,
                                                                                    stream):
    key = gw.issue_key("alice", models=["*"])
    kind, message = error_of(call(gw, key, path, "sim-error", stream), path, 502)
    assert kind == expected and "sim-error" in message
    kind, message = error_of(call(gw, key, path, "dead", stream), path, 502)
    assert kind == expected and "unreachable" in message
    facts = gw.wait_metered(key["id"], 2)
    assert sorted(f.status for f in facts) == [500, 502] and sum(f.cost for f in facts) == 0


@pytest.mark.parametrize(("path", "expected"), [("/responses", "upstream_timeout"),
                                                ("/messages", "timeout_error")])
def test_an_upstream_that_answers_too_late_is_a_504(gw, path, expected):
    kind, message = error_of(call(gw, gw.issue_key("alice", models=["*"]), path, "sim-slow"), path, 504)
    assert kind == expected and "1 s" in message


def test_an_upstreams_own_4xx_is_passed_on_in_each_apis_shape(gw):
    key = gw.issue_key("alice", models=["*"])
    kind, _ = error_of(call(gw, key, "/responses", "sim-ratelimit"), "/responses", 429)
    assert kind == "rate_limit_exceeded"
    kind, message = error_of(call(gw, key, "/messages", "sim-ratelimit"), "/messages", 429)
    assert kind == "rate_limit_error" and "simulated rate limit" in message


@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_stream_whose_upstream_stalls_after_its_head_ends_with_an_error_event_and_is_metered(gw, path):
    key = gw.issue_key("alice", models=["*"])
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", gw.v1 + path, json={"model": "sim-stall", **BODIES[path], "stream": True},
            headers={"x-api-key": key["key"]}) as response:
        assert response.status_code == 200
        events = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "error" and "failed mid-stream" in orjson.dumps(events[-1]).decode()
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.status == 504 and fact.stream and not fact.client_disconnected
