"""The upstream port's contract: the HTTP pool against the simulator, and the in-memory twin."""

from __future__ import annotations

import socket

import orjson
import pytest

from adapters.upstream.memory import InMemoryModelServer, InMemoryUpstream
from adapters.upstream.pool import UpstreamPool
from domain.ports.upstream import UpstreamTimeout, UpstreamUnavailable
from testkit.simulator.server import Simulator

CHAT = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def simulator_server():
    with Simulator(port=0) as simulator:
        yield simulator


def body(model: str = "sim", **fields: object) -> bytes:
    return orjson.dumps({"model": model, **CHAT, **fields})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UpstreamContract:
    """Each adapter names a model server's base URL (`base_url`) and one nothing answers at."""

    def make(self):
        raise NotImplementedError

    def unreachable_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def sim(self, request: pytest.FixtureRequest):
        raise NotImplementedError

    async def test_a_post_returns_status_headers_and_the_whole_body(self, sim) -> None:
        upstream = self.make()
        try:
            response = await upstream.post(sim.base_url + "/chat/completions", body(), 5)
        finally:
            await upstream.close()
        data = orjson.loads(response.body)
        assert response.status == 200
        assert response.headers["content-type"].startswith("application/json")
        assert data["usage"]["completion_tokens"] == 5

    async def test_many_sequential_posts_reuse_connections_and_stay_correct(self, sim) -> None:
        upstream = self.make()
        try:
            for n in range(1, 40):
                response = await upstream.post(sim.base_url + "/chat/completions",
                                               body(max_tokens=n % 7 + 1), 5)
                assert orjson.loads(response.body)["usage"]["completion_tokens"] == n % 7 + 1
        finally:
            await upstream.close()

    async def test_a_stream_yields_sse_lines_with_a_final_usage_chunk(self, sim) -> None:
        upstream = self.make()
        try:
            stream = await upstream.stream(sim.base_url + "/chat/completions",
                                           body(stream=True, stream_options={"include_usage": True}), 5)
            lines = [line async for line in stream.lines()]
            await stream.close()
        finally:
            await upstream.close()
        events = [line[6:] for line in lines if line.startswith(b"data: ")]
        assert stream.status == 200
        assert events[-1] == b"[DONE]"
        assert orjson.loads(events[-2])["usage"]["completion_tokens"] == 5

    async def test_an_upstream_error_status_is_returned_not_raised(self, sim) -> None:
        upstream = self.make()
        try:
            response = await upstream.post(sim.base_url + "/chat/completions", body("sim-error"), 5)
        finally:
            await upstream.close()
        assert response.status == 500
        assert "error" in orjson.loads(response.body)

    async def test_an_unreachable_upstream_raises_unavailable(self) -> None:
        upstream = self.make()
        try:
            with pytest.raises(UpstreamUnavailable):
                await upstream.post(self.unreachable_url() + "/chat/completions", body(), 5)
        finally:
            await upstream.close()

    async def test_a_streamed_error_status_is_returned_with_its_body(self, sim) -> None:
        upstream = self.make()
        try:
            stream = await upstream.stream(sim.base_url + "/chat/completions",
                                           body("sim-error", stream=True), 5)
            raw = await stream.read()
            await stream.close()
        finally:
            await upstream.close()
        assert stream.status == 500
        assert "error" in orjson.loads(raw)

    async def test_embeddings_report_prompt_tokens(self, sim) -> None:
        upstream = self.make()
        try:
            response = await upstream.post(sim.base_url + "/embeddings", orjson.dumps(
                {"model": "sim", "input": ["abcd", "abcdefgh"]}), 5)
        finally:
            await upstream.close()
        assert response.status == 200
        assert orjson.loads(response.body)["usage"]["prompt_tokens"] == 3

    async def test_a_slow_upstream_raises_timeout(self, sim) -> None:
        upstream = self.make()
        try:
            with pytest.raises(UpstreamTimeout):
                await upstream.post(sim.base_url + "/chat/completions", body("sim-slow"), 0.3)
            # The pool still serves after a timed-out call.
            response = await upstream.post(sim.base_url + "/chat/completions", body(), 5)
            assert response.status == 200
        finally:
            await upstream.close()

    # ----- Responses and Anthropic Messages (issue 15): the same usage from twin and simulator -----

    RESPONSES = {"model": "sim-cache", "input": "hello there", "instructions": "be brief",
                 "max_output_tokens": 4}
    MESSAGES = {"model": "sim-cache", "system": "be brief", "max_tokens": 4,
                "messages": [{"role": "user", "content": "hello there"}]}
    # 2 tokens of instructions or system, 3 of input, 3 for the one item or message
    RESPONSES_USAGE = {"input_tokens": 8, "output_tokens": 4, "cached": 4, "reasoning": 2}
    MESSAGES_USAGE = {"input_tokens": 2, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2,
                      "output_tokens": 4}

    async def _events(self, sim, path: str, request: dict) -> list[dict]:
        upstream = self.make()
        try:
            stream = await upstream.stream(sim.base_url + path, orjson.dumps({**request, "stream": True}), 5)
            lines = [line async for line in stream.lines()]
            await stream.close()
        finally:
            await upstream.close()
        assert stream.status == 200
        return [orjson.loads(line[6:]) for line in lines if line.startswith(b"data: ")]

    async def test_a_responses_answer_reports_input_output_cached_and_reasoning_tokens(self, sim) -> None:
        upstream = self.make()
        try:
            response = await upstream.post(sim.base_url + "/responses", orjson.dumps(self.RESPONSES), 5)
        finally:
            await upstream.close()
        data = orjson.loads(response.body)
        assert data["object"] == "response" and data["output"][0]["content"][0]["type"] == "output_text"
        assert _responses_usage(data["usage"]) == self.RESPONSES_USAGE

    async def test_a_responses_stream_ends_with_response_completed_carrying_the_usage(self, sim) -> None:
        events = await self._events(sim, "/responses", self.RESPONSES)
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        assert any(e["type"] == "response.output_text.delta" for e in events)
        assert _responses_usage(events[-1]["response"]["usage"]) == self.RESPONSES_USAGE

    async def test_a_messages_answer_reports_cache_reads_and_creation_apart_from_input(self, sim) -> None:
        upstream = self.make()
        try:
            response = await upstream.post(sim.base_url + "/messages", orjson.dumps(self.MESSAGES), 5)
        finally:
            await upstream.close()
        data = orjson.loads(response.body)
        assert data["type"] == "message" and data["content"][0]["type"] == "text"
        assert data["usage"] == self.MESSAGES_USAGE

    async def test_a_messages_stream_reports_input_at_start_and_output_at_its_delta(self, sim) -> None:
        events = await self._events(sim, "/messages", self.MESSAGES)
        kinds = [e["type"] for e in events]
        assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
        assert "content_block_delta" in kinds
        start = events[0]["message"]["usage"]
        assert {k: start[k] for k in self.MESSAGES_USAGE if k != "output_tokens"} == {
            k: v for k, v in self.MESSAGES_USAGE.items() if k != "output_tokens"}
        assert events[-2]["usage"]["output_tokens"] == 4


def _responses_usage(usage: dict) -> dict:
    return {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
            "cached": usage["input_tokens_details"]["cached_tokens"],
            "reasoning": usage["output_tokens_details"]["reasoning_tokens"]}


class TestUpstreamPool(UpstreamContract):
    @pytest.fixture
    def sim(self, simulator_server: Simulator) -> Simulator:
        return simulator_server

    def make(self):
        return UpstreamPool()

    def unreachable_url(self) -> str:
        return f"http://127.0.0.1:{closed_port()}/v1"


class MemoryServerAt:
    base_url = "http://model.memory.invalid/v1"


class TestInMemoryUpstream(UpstreamContract):
    @pytest.fixture
    def sim(self) -> MemoryServerAt:
        return MemoryServerAt()

    def make(self):
        return InMemoryUpstream({MemoryServerAt.base_url: InMemoryModelServer(slow_s=5)})

    def unreachable_url(self) -> str:
        return "http://nothing.memory.invalid/v1"
