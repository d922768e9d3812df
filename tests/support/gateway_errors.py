"""The gateway the /v1 error tests share, one per test module, and helpers to call it.

One gateway (on a fixed clock) in front of the simulator serves the module; its knobs are
routed as models: sim-slow (answers after 3 s, past the 1 s upstream timeout), sim-error
(HTTP 500), sim-ratelimit (an OpenAI-shaped 429) and dead (a port nobody listens on).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from adapters.clock import FixedClock
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, add_models, free_port, running_gateway, sim_config

MAX_BODY = 4096
USER_MSG = [{"role": "user", "content": "hello"}]
ROLES = frozenset({"gateway", "ledger", "scheduler"})


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0, slow_s=3.0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(scope="module")
def gw(sim: Simulator, clock: FixedClock, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[RunningGateway]:
    config = add_models(sim_config(sim.base_url), {
        "sim-slow": "sim-slow", "sim-error": "sim-error", "sim-ratelimit": "sim-ratelimit",
        "dead": (f"http://127.0.0.1:{free_port()}/v1", "dead")})
    with running_gateway(tmp_path_factory.mktemp("gw-errors"), config, clock=clock, roles=ROLES,
                         max_body_bytes=MAX_BODY, upstream_timeout_s=1.0) as gateway:
        gateway.setup_user("alice")
        yield gateway


@pytest.fixture
def key(gw: RunningGateway) -> dict:
    """A fresh key of alice's for every model, so no test sees another's limits or facts."""
    return gw.issue_key("alice", models=["*"])


def post(gw: RunningGateway, secret: str | None, path: str = "/chat/completions", **kwargs
         ) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"} if secret is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(gw.v1 + path, headers=headers, timeout=30, **kwargs)


def chat(gw: RunningGateway, secret: str | None, **body) -> httpx.Response:
    return post(gw, secret, json={"model": "sim", "messages": USER_MSG, "max_tokens": 4, **body})
