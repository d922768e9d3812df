"""The upstream port's in-memory twin: OpenAI-compatible model servers that live in the process.

`InMemoryUpstream` routes a URL to the `InMemoryModelServer` registered for its base URL
(an unknown one is unreachable, as a closed port is). The server answers chat completions,
completions, embeddings, OpenAI Responses and Anthropic Messages (`memory_apis.py`), whole
or streamed, with deterministic usage, so tests and the
hot-path benchmark run the gateway without sockets. It passes the same contract suite as
the HTTP pool (`tests/contract/test_upstream.py`).

Its rules, deliberately simple: a text costs ceil(UTF-8 bytes / 4) tokens; a chat prompt
costs its messages' text tokens + 3 per message; the answer is `max_tokens` (default 16)
one-token words. A model named `*-error` answers HTTP 500 in the OpenAI error shape; one
named `*-slow` takes `slow_s` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from adapters.upstream.memory_apis import messages_answer, messages_events, responses_answer, responses_events
from domain.ports.upstream import UpstreamResponse, UpstreamTimeout, UpstreamUnavailable

WORDS = ("lorem", " ipsum", " dolor", " sit", " amet", ",", " sed", " do")
JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}


def tokens(text: str) -> int:
    return (len(text.encode()) + 3) // 4


def prompt_tokens(request: dict[str, Any]) -> int:
    if isinstance(request.get("messages"), list):
        return sum(tokens(_text(m.get("content")) if isinstance(m, dict) else "") + 3
                   for m in request["messages"])
    value = request.get("prompt", request.get("input", ""))
    items = value if isinstance(value, list) else [value]
    if items and all(isinstance(i, int) for i in items):
        return len(items)
    return sum(tokens(_text(i)) for i in items)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class InMemoryModelServer:
    """One OpenAI-compatible server's answers, computed in memory."""

    def __init__(self, slow_s: float = 30.0) -> None:
        self.slow_s = slow_s
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (path, body) as received

    async def answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = orjson.loads(body)
        self.requests.append((path, request))
        model = str(request.get("model", ""))
        if model.endswith("-slow"):
            await asyncio.sleep(self.slow_s)
        if model.endswith("-error"):
            return 500, {"error": {"message": "the model failed", "type": "server_error",
                                   "code": None, "param": None}}
        n = int(request.get("max_tokens") or request.get("max_output_tokens") or 16)
        text = "".join(WORDS[i % len(WORDS)] for i in range(n))
        if path.endswith("/responses"):
            return 200, responses_answer(request, model, text, n)
        if path.endswith("/messages"):
            return 200, messages_answer(request, model, text, n)
        prompt = prompt_tokens(request)
        if path.endswith("/embeddings"):
            return 200, {"object": "list", "model": model,
                         "data": [{"object": "embedding", "index": 0, "embedding": [0.0] * 8}],
                         "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
        usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        if path.endswith("/chat/completions"):
            choice = {"index": 0, "finish_reason": "length",
                      "message": {"role": "assistant", "content": text}}
            return 200, {"id": "chatcmpl-memory", "object": "chat.completion", "created": 0,
                         "model": model, "choices": [choice], "usage": usage}
        return 200, {"id": "cmpl-memory", "object": "text_completion", "created": 0,
                     "model": model, "usage": usage,
                     "choices": [{"index": 0, "text": text, "finish_reason": "length"}]}


class InMemoryStream:
    def __init__(self, status: int, lines: list[bytes]) -> None:
        self.status = status
        self.headers = dict(SSE if status == 200 else JSON)
        self._lines = lines
        self.closed = False

    async def lines(self) -> AsyncIterator[bytes]:
        for line in self._lines:
            if self.closed:
                return
            yield line

    async def read(self) -> bytes:
        return b"\n".join(self._lines)

    async def close(self) -> None:
        self.closed = True


class InMemoryUpstream:
    """Routes each call to the in-memory server registered for the URL's base."""

    def __init__(self, servers: dict[str, InMemoryModelServer] | None = None) -> None:
        self.servers = dict(servers or {})

    def _server(self, url: str) -> tuple[InMemoryModelServer, str]:
        for base, server in self.servers.items():
            if url.startswith(base.rstrip("/") + "/"):
                return server, url[len(base.rstrip("/")):]
        raise UpstreamUnavailable(f"no model server answers at {url}")

    async def _answer(self, url: str, body: bytes, timeout_s: float) -> tuple[int, dict[str, Any]]:
        server, path = self._server(url)
        try:
            return await asyncio.wait_for(server.answer(path, body), timeout_s)
        except TimeoutError:
            raise UpstreamTimeout(f"{url} did not answer within {timeout_s:g} s") from None

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse:
        status, data = await self._answer(url, body, timeout_s)
        return UpstreamResponse(status, dict(JSON), orjson.dumps(data))

    async def stream(self, url: str, body: bytes, timeout_s: float) -> InMemoryStream:
        status, data = await self._answer(url, body, timeout_s)
        if status != 200:
            return InMemoryStream(status, [orjson.dumps(data)])
        if url.endswith("/responses"):
            return InMemoryStream(status, responses_events(data))
        if url.endswith("/messages"):
            return InMemoryStream(status, messages_events(data))
        return InMemoryStream(status, _as_events(data, orjson.loads(body)))

    async def close(self) -> None:
        pass


def _as_events(data: dict[str, Any], request: dict[str, Any]) -> list[bytes]:
    """A whole answer as SSE lines: one chunk per choice's text, then usage if asked, [DONE]."""
    chunks = []
    for choice in data["choices"]:
        delta = ({"delta": {"role": "assistant", "content": choice["message"]["content"]}}
                 if "message" in choice else {"text": choice["text"]})
        chunks.append({**data, "object": "chat.completion.chunk", "usage": None,
                       "choices": [{"index": choice["index"], **delta,
                                    "finish_reason": choice["finish_reason"]}]})
    if (request.get("stream_options") or {}).get("include_usage"):
        chunks.append({**data, "object": "chat.completion.chunk", "choices": []})
    lines = []
    for chunk in chunks:
        lines += [b"data: " + orjson.dumps(chunk), b""]
    return [*lines, b"data: [DONE]", b""]
