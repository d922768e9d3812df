"""Responses and Messages streams keep the chat path's billing guarantees (issue 15): a long
stream is metered in parts that sum to the model server's usage and count one request; an
answer whose fact cannot be published is withheld (503, or an error event in place of the
stream's end) in the route's shape; and analytics holds the same tokens and cost as the ledger.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from adapters.bus.inproc import InProcessBus
from domain.ports.analytics import UsageQuery
from infra.runner import ALL_ROLES
from testkit.simulator.server import Simulator
from tests.integration.test_gateway_metering_unavailable import SwitchableBus
from tests.support.api_models import ALL_APIS, HI, expected_cost
from tests.support.gateway import RunningGateway, add_models, openai_error, running_gateway, sim_config

PART, TOKENS = 10, 300
BODIES = {"/responses": {"model": "sim", "input": "tell me a long story", "max_output_tokens": TOKENS},
          "/messages": {"model": "sim", "max_tokens": TOKENS, "messages": HI}}


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> SwitchableBus:
    return SwitchableBus(InProcessBus(partitions=4, journal_dir=tmp_path_factory.mktemp("bus")))


@pytest.fixture(scope="module")
def gw(bus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    data: Path = tmp_path_factory.mktemp("gw-api-parts")
    with Simulator(port=0, completion_tokens=TOKENS) as sim:
        config = add_models(sim_config(sim.base_url, apis=ALL_APIS), {"sim-cache": "sim-cache"})
        config = dataclasses.replace(config, models=[dataclasses.replace(m, max_output_tokens=TOKENS)
                                                     for m in config.models])
        with running_gateway(data, config, roles=ALL_ROLES, bus=bus, stream_progress_tokens=PART,
                             stream_progress_s=60) as gateway:
            gateway.setup_user("ada")
            yield gateway


def stream(gw: RunningGateway, key: dict, path: str, body: dict) -> list[dict]:
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", gw.v1 + path, json={**body, "stream": True},
            headers={"x-api-key": key["key"]}) as response:
        assert response.status_code == 200
        return [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def final_facts(gw: RunningGateway, key: dict) -> list:
    deadline = time.monotonic() + 15
    facts = gw.metered(key["id"])
    while not any(f.final for f in facts):
        assert time.monotonic() < deadline, f"no final fact among {len(facts)}"
        time.sleep(0.05)
        facts = gw.metered(key["id"])
    return facts


@pytest.mark.parametrize("path", sorted(BODIES))
def test_a_long_stream_is_metered_in_parts_that_sum_to_its_usage_and_count_once(gw, path):
    key = gw.issue_key("ada", models=["*"])
    events = stream(gw, key, path, BODIES[path])
    if path == "/responses":
        usage = events[-1]["response"]["usage"]
        prompt, output = usage["input_tokens"], usage["output_tokens"]
    else:
        prompt, output = events[0]["message"]["usage"]["input_tokens"], events[-2]["usage"]["output_tokens"]
    facts = final_facts(gw, key)
    assert len([f for f in facts if not f.final]) >= TOKENS // PART - 2
    assert [f.final for f in facts].count(True) == 1 and facts[-1].final
    assert len({f.request_id for f in facts}) == 1 and sum(f.requests for f in facts) == 1
    assert sum(f.prompt_tokens for f in facts) == prompt
    assert sum(f.completion_tokens for f in facts) == output == TOKENS
    assert sum(f.cost for f in facts) == expected_cost("sim", prompt=prompt, output=output)


def test_analytics_holds_the_ledgers_tokens_and_cost_for_both_apis(gw):
    key = gw.issue_key("ada", models=["*"])
    for path in BODIES:
        for streamed in (False, True):
            body = {**BODIES[path], "model": "sim-cache", "stream": streamed}
            body["max_output_tokens" if path == "/responses" else "max_tokens"] = 5
            answer = httpx.post(gw.v1 + path, json=body, headers={"x-api-key": key["key"]}, timeout=30)
            assert answer.status_code == 200
    facts = gw.wait_metered(key["id"], 4)
    assert sum(f.cached_tokens for f in facts) > 0 and sum(f.cache_write_tokens for f in facts) > 0
    assert sum(f.reasoning_tokens for f in facts) > 0
    now = gw.system.clock.now()
    query = UsageQuery(start=now - timedelta(hours=1), end=now + timedelta(hours=1), key_id=key["id"])
    deadline = time.monotonic() + 15
    while (totals := gw.system.ctx.analytics.usage(query)) == [] or totals[0].requests < 4:
        assert time.monotonic() < deadline, totals
        time.sleep(0.1)
    [total] = totals
    assert (total.requests, total.prompt_tokens, total.completion_tokens, total.cached_tokens,
            total.cost) == (4, sum(f.prompt_tokens for f in facts), sum(f.completion_tokens for f in facts),
        sum(f.cached_tokens for f in facts), sum(f.cost for f in facts))


@pytest.fixture
def refusing(bus: SwitchableBus) -> Iterator[None]:
    bus.refusing = True
    yield
    bus.refusing = False


def test_an_answer_that_cannot_be_metered_is_withheld_in_each_apis_shape(gw, refusing):
    key = gw.issue_key("ada", models=["*"])
    responses = httpx.post(gw.v1 + "/responses", json={**BODIES["/responses"], "max_output_tokens": 4},
                           headers={"x-api-key": key["key"]}, timeout=30)
    openai_error(responses, 503, "metering_unavailable")
    messages = httpx.post(gw.v1 + "/messages", json={**BODIES["/messages"], "max_tokens": 4},
                          headers={"x-api-key": key["key"]}, timeout=30)
    assert messages.status_code == 503 and messages.json()["error"]["type"] == "overloaded_error"
    assert gw.metered(key["id"]) == []


@pytest.mark.parametrize(("path", "last_of_answer"), [("/responses", "response.completed"),
                                                      ("/messages", "message_delta")])
def test_a_stream_that_cannot_be_metered_ends_with_an_error_event_not_its_usage(gw, refusing, path,
                                                                                 last_of_answer):
    key = gw.issue_key("ada", models=["*"])
    body = {**BODIES[path], "max_output_tokens" if path == "/responses" else "max_tokens": 4}
    events = stream(gw, key, path, body)
    assert events[-1]["type"] == "error"
    assert all(e["type"] != last_of_answer for e in events)
    assert gw.metered(key["id"]) == []
