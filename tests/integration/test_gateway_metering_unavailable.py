"""No request is served unmetered: when the bus refuses a fact, the answer is withheld.

The gateway runs on the in-process bus behind a switch that makes publishes to
meterline.usage fail, as a broker that is down or refuses writes would. The client gets a
503 `metering_unavailable` (or, mid-stream, an error event in place of the end of the
answer), the ledger records nothing, and the budget's counters hold nothing back for the
refused requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import orjson
import pytest

from adapters.bus.inproc import InProcessBus
from domain.ports.bus import USAGE_TOPIC, BusMessage
from domain.quota_policy import Scope
from testkit.simulator.server import Simulator
from tests.support.gateway import RunningGateway, openai_error, running_gateway, sim_config

ROLES = frozenset({"gateway", "ledger"})
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


class SwitchableBus:
    """The in-process bus, except that publishes to meterline.usage fail while `refusing`."""

    def __init__(self, inner: InProcessBus) -> None:
        self.inner = inner
        self.refusing = False

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def publish(self, topic: str, messages: Sequence[BusMessage]) -> None:
        if self.refusing and topic == USAGE_TOPIC:
            raise ConnectionError("the broker refused the write (test switch)")
        await self.inner.publish(topic, messages)

    def consumer(self, topic: str, group: str):
        return self.inner.consumer(topic, group)


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> SwitchableBus:
    return SwitchableBus(InProcessBus(partitions=4, journal_dir=tmp_path_factory.mktemp("bus")))


@pytest.fixture(scope="module")
def gw(bus: SwitchableBus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    data: Path = tmp_path_factory.mktemp("gw-unmetered")
    with Simulator(port=0, chunk_delay_ms=5) as sim, running_gateway(
            data, sim_config(sim.base_url), roles=ROLES, bus=bus) as gateway:
        gateway.setup_user("alice")
        yield gateway


@pytest.fixture
def refusing(bus: SwitchableBus) -> Iterator[None]:
    bus.refusing = True
    yield
    bus.refusing = False


def post(gw: RunningGateway, key: str, **body) -> httpx.Response:
    return httpx.post(gw.v1 + "/chat/completions", json={**CHAT, **body}, timeout=30,
                      headers={"authorization": f"Bearer {key}"})


def test_an_answer_that_cannot_be_metered_is_withheld_with_503(gw, bus, refusing):
    key = gw.issue_key("alice")
    response = post(gw, key["key"])
    openai_error(response, 503, "metering_unavailable")
    assert "choices" not in response.json()
    bus.refusing = False
    assert post(gw, key["key"]).status_code == 200
    assert [f.status for f in gw.wait_metered(key["id"], 1)] == [200]


def test_refused_facts_leave_nothing_reserved_or_unacknowledged(gw, refusing):
    key = gw.issue_key("alice", budget_usd="1.00", budget_mode="hard")
    for _ in range(5):
        openai_error(post(gw, key["key"]), 503, "metering_unavailable")
    counters = gw.system.ctx.guard.snapshot((Scope.KEY, key["id"]))
    assert counters is not None
    assert (counters["reserved"], counters["unacknowledged"]) == (0, 0)
    assert gw.metered(key["id"]) == []


def test_a_stream_whose_fact_cannot_be_metered_ends_with_an_error_not_its_last_chunk(gw, refusing):
    key = gw.issue_key("alice")
    with httpx.stream("POST", gw.v1 + "/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                      headers={"authorization": f"Bearer {key['key']}"}) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] != "data: [DONE]"
    last = orjson.loads(lines[-1].removeprefix("data: "))
    assert last["error"]["code"] == "metering_unavailable"
    assert all("usage" not in orjson.loads(line[5:]) for line in lines[:-1])
    assert gw.metered(key["id"]) == []
