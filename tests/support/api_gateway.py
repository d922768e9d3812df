"""Fixtures for the Responses and Messages tests (issue 15): the simulator and a second one
that drips 40 tokens 50 ms apart, a gateway in front of both with the models of
tests/support/api_models.py (which also holds the helpers). Load it in a test module with
`pytest_plugins = ["tests.support.api_gateway"]` and never import it (pytest rewrites it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.simulator.server import Simulator
from tests.support.api_models import DRIP_TOKENS, api_config
from tests.support.gateway import RunningGateway, running_gateway

ROLES = frozenset({"gateway", "ledger", "scheduler"})


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[Simulator, Simulator]]:
    with Simulator(port=0) as sim, Simulator(port=0, completion_tokens=DRIP_TOKENS,
                                             chunk_delay_ms=50) as drip:
        yield sim, drip


@pytest.fixture(scope="module")
def sim(sims) -> Simulator:
    return sims[0]


@pytest.fixture(scope="module")
def gw(sims, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    sim, drip = sims
    with running_gateway(tmp_path_factory.mktemp("gw-apis"), api_config(sim.base_url, drip.base_url),
                         roles=ROLES) as gateway:
        yield gateway
