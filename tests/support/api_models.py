"""A gateway config for the Responses and Messages tests (issue 15), and the exact cost rule.

Models, all on the simulator unless said: `sim` speaks every API ($1.00 in, $2.00 out a
million tokens, at most 64 output tokens); `sim-cache` is the simulator's cache knob with
cache-read $0.10, cache-write $1.25 and reasoning $3.00; `sim-chat` speaks only the default
APIs; `sim-stateful` has an upstream that keeps Responses state; `sim-drip` streams 40 tokens
50 ms apart from a second simulator; `sim-fails` answers 500; `sim-quiet` reports no usage.
The gateway in front of them: the fixtures of tests/support/api_gateway.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import ROUND_HALF_EVEN, Decimal

import anthropic
import httpx

from infra.config.toml_file import DEFAULT_APIS, MeterlineConfig
from tests.support.gateway import RunningGateway, add_models, sim_config

DRIP_TOKENS = 40
HI = [{"role": "user", "content": "hi"}]
ALL_APIS = ["chat", "completions", "embeddings", "responses", "messages"]
NANO = 10**9
# nano-USD per million tokens
PRICES = {"sim": dict(input=1 * NANO, output=2 * NANO),
          "sim-cache": dict(input=1 * NANO, output=2 * NANO, cached=NANO // 10, write=NANO * 5 // 4,
                            reasoning=3 * NANO)}


def api_config(base_url: str, drip_url: str) -> MeterlineConfig:
    config = add_models(sim_config(base_url, apis=ALL_APIS), {
        "sim-cache": "sim-cache", "sim-chat": "sim-model", "sim-stateful": "sim-model",
        "sim-drip": (drip_url, "sim-model"), "sim-fails": "sim-error",
        "sim-quiet": "sim-nousage"})
    changes = {"sim-cache": dict(cached_input_per_million=NANO // 10, cache_write_per_million=NANO * 5 // 4,
                                 reasoning_per_million=3 * NANO),
               "sim-chat": dict(apis=DEFAULT_APIS), "sim-stateful": dict(upstream_keeps_state=True)}
    models = [dataclasses.replace(m, **changes.get(m.name, {})) for m in config.models]
    return dataclasses.replace(config, models=models)


def expected_cost(model: str, *, prompt: int, output: int, cached: int = 0, written: int = 0,
                  reasoning: int = 0) -> int:
    """The cost rule written out once more, independently of domain.pricing: per-token prices,
    one rounding (half to even) per request."""
    p = PRICES[model]
    numerator = ((prompt - cached - written) * p["input"] + cached * p.get("cached", p["input"])
                 + written * p.get("write", p["input"]) + (output - reasoning) * p["output"]
                 + reasoning * p.get("reasoning", p["output"]))
    return int((Decimal(numerator) / 10**6).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def new_key(gw: RunningGateway, models: list[str] | None = None, **fields) -> dict:
    """A key of a new user in a new team, so budgets set in one test hold no other's requests."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    gw.setup_user(user, team_id=f"t-{uuid.uuid4().hex[:8]}")
    return gw.issue_key(user, models=models or ["*"], **fields)


def post_message(gw: RunningGateway, key: dict | None, body: dict, path: str = "/messages") -> httpx.Response:
    headers = {"anthropic-version": "2023-06-01"}
    if key is not None:
        headers["x-api-key"] = key["key"]
    return httpx.post(gw.v1 + path, json=body, headers=headers, timeout=60)


def anthropic_sdk(gw: RunningGateway, key: dict | str) -> anthropic.Anthropic:
    secret = key if isinstance(key, str) else key["key"]
    return anthropic.Anthropic(base_url=gw.url, api_key=secret, max_retries=0)


def anthropic_error(response: httpx.Response, status: int, kind: str) -> dict:
    """Asserts an error in Anthropic's shape with this status and type; returns its body."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["type"] == "error" and set(body) <= {"type", "error", "request_id"}, body
    assert body["error"]["type"] == kind and body["error"]["message"], body
    return body


def message(model: str = "sim", **fields) -> dict:
    return {"model": model, "max_tokens": 8, "messages": HI, **fields}
