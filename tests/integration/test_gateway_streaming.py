"""Streams through the gateway: what the client sees, and what is metered when it leaves early.

The simulator streams 40 one-token pieces 50 ms apart (2 s in all), so a client that reads a
few chunks and hangs up leaves the gateway mid-stream.
"""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from domain.quota_policy import Scope
from domain.usage import UsageSource
from tests.support.gateway import RunningGateway, running_gateway, sim_config

pytest_plugins = ["tests.support.upstreams"]  # fixtures: simulator_factory

ROLES = frozenset({"gateway", "ledger", "scheduler"})
PIECES = 40


@pytest.fixture
def sim(simulator_factory):
    return simulator_factory(completion_tokens=PIECES, chunk_delay_ms=50)


@pytest.fixture
def gw(sim, tmp_path):
    with running_gateway(tmp_path / "data", sim_config(sim.base_url), roles=ROLES) as gateway:
        gateway.setup_user("alice")
        yield gateway


def events(lines: list[str]) -> list[dict]:
    return [orjson.loads(line[5:]) for line in lines if line.startswith("data:") and line != "data: [DONE]"]


def stream(gw: RunningGateway, secret: str, **body) -> list[str]:
    request = {"model": "sim", "stream": True, "max_tokens": 64,
               "messages": [{"role": "user", "content": "count"}], **body}
    with httpx.stream("POST", gw.v1 + "/chat/completions", json=request, timeout=30,
                      headers={"authorization": f"Bearer {secret}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line for line in response.iter_lines() if line]


@pytest.mark.parametrize("endpoint", ["/chat/completions", "/completions"])
@pytest.mark.parametrize("first_chunks", [1, 3])
def test_a_client_that_disconnects_mid_stream_is_still_metered(gw, endpoint, first_chunks):
    key = gw.issue_key("alice")
    body = {"model": "sim", "stream": True, "max_tokens": 64}
    body.update({"messages": [{"role": "user", "content": "count slowly"}]} if endpoint == "/chat/completions"
                else {"prompt": "count slowly"})
    started = time.monotonic()
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", gw.v1 + endpoint, json=body, headers={"authorization": f"Bearer {key['key']}"}
    ) as response:
        assert response.status_code == 200
        received = 0
        for line in response.iter_lines():
            # chunks with text: a chat stream's first chunk only names the role, and now goes
            # out at once, before the model has generated anything
            received += line.startswith("data:") and '"content":""' not in line
            if received == first_chunks:
                break
    # leaving both blocks closed the connection, about 2 s before the stream would have ended
    assert time.monotonic() - started < 1.5
    [fact] = gw.wait_metered(key["id"], 1)
    assert fact.client_disconnected is True
    assert fact.stream is True
    assert fact.status == 200
    assert fact.usage_source in (UsageSource.ESTIMATED, UsageSource.UPSTREAM)
    assert 0 < fact.completion_tokens < PIECES  # what was generated until the client left
    assert fact.prompt_tokens > 0
    assert fact.cost > 0
    assert fact.endpoint == "/v1" + endpoint


def test_a_stream_read_to_the_end_is_metered_from_the_upstreams_usage(gw):
    key = gw.issue_key("alice")
    lines = stream(gw, key["key"], max_tokens=5)
    assert lines[-1] == "data: [DONE]"
    chunks = events(lines)
    assert all(c["model"] == "sim" for c in chunks)
    assert all("usage" not in c or c["usage"] is None for c in chunks), "usage only when asked for"
    [fact] = gw.wait_metered(key["id"], 1)
    assert (fact.client_disconnected, fact.usage_source, fact.completion_tokens) == (
        False, UsageSource.UPSTREAM, 5)
    assert fact.prompt_tokens == 2 + 3  # "count": 5 bytes -> 2 tokens, + 3 per message


def test_a_stream_that_asks_for_usage_gets_it_last_and_it_matches_the_ledger(gw):
    key = gw.issue_key("alice")
    chunks = events(stream(gw, key["key"], max_tokens=5, stream_options={"include_usage": True}))
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert all(c.get("usage") is None for c in chunks[:-1])
    [fact] = gw.wait_metered(key["id"], 1)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (fact.prompt_tokens,
                                                                    fact.completion_tokens)


def test_a_reservation_is_released_when_the_client_disconnects(gw):
    key = gw.issue_key("alice", budget_usd="1", budget_mode="hard")
    with httpx.stream("POST", gw.v1 + "/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {key['key']}"},
                      json={"model": "sim", "stream": True, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "count"}]}) as response:
        next(response.iter_lines())
    [fact] = gw.wait_metered(key["id"], 1)
    deadline = time.monotonic() + 5
    while (snap := gw.system.ctx.guard.snapshot((Scope.KEY, key["id"])))["reserved"] and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert snap["reserved"] == 0, snap
    assert snap["ledger_spent"] == fact.cost


def test_an_upstream_that_stalls_mid_stream_ends_the_stream_with_an_error_and_is_metered(
        simulator_factory, tmp_path):
    sim = simulator_factory(completion_tokens=PIECES, chunk_delay_ms=1500)  # past the 1 s timeout
    with running_gateway(tmp_path / "data", sim_config(sim.base_url), roles=ROLES,
                         upstream_timeout_s=1.0) as gw:
        gw.setup_user("alice")
        key = gw.issue_key("alice")
        lines = stream(gw, key["key"], max_tokens=8)
        [fact] = gw.wait_metered(key["id"], 1)
    assert lines[-1] != "data: [DONE]"
    error = events(lines)[-1]["error"]
    assert {"message", "type", "code"} <= set(error) and error["code"] == "upstream_error"
    assert (fact.status, fact.stream, fact.cost) == (504, True, 0)


def test_a_client_that_disconnects_makes_the_gateway_hang_up_on_the_model_server(
        simulator_factory, tmp_path):
    """Otherwise the model server would go on generating tokens nobody reads.

    Its own simulator streams for 12 s (pieces 300 ms apart), so that a test thread
    starved for a second or two under load still finds the stream going when it looks.
    """
    sim = simulator_factory(completion_tokens=PIECES, chunk_delay_ms=300)
    with running_gateway(tmp_path / "data", sim_config(sim.base_url), roles=ROLES) as gw:
        gw.setup_user("alice")
        key = gw.issue_key("alice")
        with httpx.stream("POST", gw.v1 + "/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {key['key']}"},
                          json={"model": "sim", "stream": True, "max_tokens": 64,
                                "messages": [{"role": "user", "content": "count"}]}) as response:
            next(response.iter_lines())
            # The simulator's own thread records connections: give it a moment to catch up.
            deadline = time.monotonic() + 2.0
            while not sim._running.connections and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(sim._running.connections) == 1  # the gateway's connection, streaming
        hung_up = time.monotonic()
        gw.wait_metered(key["id"], 1)
        while sim._running.connections and time.monotonic() < hung_up + 5:  # stream: 12 s
            time.sleep(0.02)
        assert not sim._running.connections
