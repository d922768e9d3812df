"""What the attack tests of /v1/responses and /v1/messages share: a request body per API, and
ways to send, read and make the simulator report a usage of the test's choosing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import orjson

from tests.support.api_models import HI

BODIES = {"/responses": {"model": "sim", "input": "hello there", "max_output_tokens": 16},
          "/messages": {"model": "sim", "messages": HI, "max_tokens": 16}}


def post(gw, key: dict, path: str, body: dict) -> httpx.Response:
    return httpx.post(gw.v1 + path, json=body, headers={"x-api-key": key["key"]}, timeout=30)


def events_of(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


@contextmanager
def reporting(sim, usage: dict) -> Iterator[None]:
    """The simulator reports `usage` on Responses and Messages answers instead of its own."""
    sim.app.usage_patch = usage
    try:
        yield
    finally:
        sim.app.usage_patch = None


def metered_alone(gw, key: dict):
    """The one fact metered for `key` (waits for the ledger)."""
    [fact] = gw.wait_metered(key["id"], 1)
    return fact


# usage a lying model server reports, per API: far past any reservation
LIES = {"/responses": {"input_tokens": 10**9, "output_tokens": 10**9,
                       "output_tokens_details": {"reasoning_tokens": 10**9}},
        "/messages": {"input_tokens": 3, "output_tokens": 5, "cache_read_input_tokens": 10**6,
                      "cache_creation_input_tokens": 10**6}}
