"""/v1 requests on their way upstream: what passes through, and what upstream failures become."""

from __future__ import annotations

import pytest

from domain.quota_policy import Scope
from tests.support.gateway import openai_error
from tests.support.gateway_errors import USER_MSG, chat
from tests.support.gateway_errors import clock as clock  # fixtures, used by name
from tests.support.gateway_errors import gw as gw
from tests.support.gateway_errors import key as key
from tests.support.gateway_errors import sim as sim

# ----- passing through ----------------------------------------------------------------------


def test_unknown_fields_reach_the_upstream_unchanged(gw, sim, key):
    extras = {"top_k": 7, "x_vendor_option": {"nested": [1, "two", None]}, "seed": 42,
              "logit_bias": {"50256": -100}, "user": "end-user-9"}
    response = chat(gw, key["key"], **extras)
    assert response.status_code == 200, response.text
    received = sim.app.last_body
    assert {k: received.get(k) for k in extras} == extras
    assert received["model"] == "sim-model"  # the route's upstream name, not the client's
    assert received["messages"] == USER_MSG
    assert response.json()["model"] == "sim"  # the client gets back the name it asked for


def test_the_gateway_caps_max_tokens_at_the_models_limit_upstream(gw, sim, key):
    chat(gw, key["key"], max_tokens=10_000).raise_for_status()
    assert sim.app.last_body["max_tokens"] == 64
    chat(gw, key["key"], max_tokens=None, max_completion_tokens=3).raise_for_status()
    assert sim.app.last_body["max_tokens"] == 3
    assert "max_completion_tokens" not in sim.app.last_body


# ----- 502 / 504: the upstream failed -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_server_error_becomes_502(gw, key, stream):
    error = openai_error(chat(gw, key["key"], model="sim-error", stream=stream), 502, "upstream_error")
    assert "sim-error" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_becomes_502(gw, key, stream):
    error = openai_error(chat(gw, key["key"], model="dead", stream=stream), 502, "upstream_error")
    assert "unreachable" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_answers_too_late_becomes_504(gw, key, stream):
    error = openai_error(chat(gw, key["key"], model="sim-slow", stream=stream), 504, "upstream_timeout")
    assert "1 s" in error["message"]


def test_an_openai_shaped_upstream_4xx_is_passed_through(gw, key):
    openai_error(chat(gw, key["key"], model="sim-ratelimit"), 429, "rate_limit_exceeded")


def test_failed_upstream_calls_are_metered_with_their_status_and_cost_nothing(gw):
    key = gw.issue_key("alice", models=["*"])
    for model in ("sim-error", "dead", "sim-slow", "sim-ratelimit"):
        assert chat(gw, key["key"], model=model).status_code >= 400
    assert chat(gw, key["key"]).status_code == 200
    facts = gw.wait_metered(key["id"], 5)
    assert len(facts) == 5
    by_model = {f.model: f for f in facts}
    assert {m: f.status for m, f in by_model.items()} == {
        "sim-error": 500, "dead": 502, "sim-slow": 504, "sim-ratelimit": 429, "sim": 200}
    assert all(f.cost == 0 for f in facts if f.status != 200)
    assert by_model["sim"].cost > 0
    assert gw.system.ledger.budget(Scope.KEY, key["id"]).period_spent == by_model["sim"].cost


# ----- the unexpected -------------------------------------------------------------------------


class BrokenUpstream:
    """An upstream adapter with a bug: every call raises something no handler expects."""

    async def post(self, url: str, body: bytes, timeout_s: float):
        raise RuntimeError("a bug in the upstream adapter")

    async def stream(self, url: str, body: bytes, timeout_s: float):
        raise RuntimeError("a bug in the upstream adapter")

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("stream", [False, True])
def test_an_unexpected_failure_is_a_500_in_openai_shape_and_frees_its_reservation(gw, stream):
    key = gw.issue_key("alice", budget_usd="1", budget_mode="hard")
    working, gw.system.ctx.upstream = gw.system.ctx.upstream, BrokenUpstream()
    try:
        response = chat(gw, key["key"], stream=stream)
    finally:
        gw.system.ctx.upstream = working
    error = openai_error(response, 500, "internal_error")
    assert "a bug" not in error["message"]  # no internals leak to the client
    assert gw.system.ctx.guard.snapshot((Scope.KEY, key["id"]))["reserved"] == 0
    assert chat(gw, key["key"], stream=stream).status_code == 200
