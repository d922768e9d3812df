"""The simulator's request handler: routing, request knobs, deterministic failures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson

from testkit.simulator import api_shapes as api
from testkit.simulator import openai_shapes as oa
from testkit.simulator.protocol import Request, Response, Result, Stream

KNOBS = ("sim-slow", "sim-error", "sim-ratelimit", "sim-nousage", "sim-cache")


@dataclass(frozen=True)
class SimConfig:
    """How the simulator behaves; every field has a CLI flag."""

    completion_tokens: int = 16  # N: completion_tokens = min(max_tokens, N)
    default_max_tokens: int = 16  # used when a request sends no max_tokens
    latency_ms: float = 0.0  # added before every inference answer
    chunk_delay_ms: float = 0.0  # between stream events
    fail_rate: float = 0.0  # this exact fraction of inference requests gets a 500
    usage: bool = True  # False: omit usage everywhere (to test estimation)
    slow_s: float = 2.0
    embedding_dims: int = 16
    model: str = "sim-model"


def _error(status: int, message: str, kind: str, code: str | None = None) -> Response:
    return Response(status, oa.error_body(message, kind, code))


async def _later(delay_s: float, result: Result) -> Result:
    await asyncio.sleep(delay_s)
    return result


class SimApp:
    """The request handler: routing, knobs, deterministic failures, counters."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.requests = 0
        self.last_body: dict | None = None  # the last inference request, as parsed (for tests)
        # Tests of a lying model server: the usage Responses and Messages answers report instead
        # of their own (a Messages stream sends it in message_start, its output_tokens in
        # message_delta, or a message_delta without usage if it has none).
        self.usage_patch: dict | None = None
        self._inference = 0
        self._routes = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/responses"): self._responses,
            ("POST", "/v1/messages"): self._messages,
            ("POST", "/v1/messages/count_tokens"): self._count_tokens,
        }

    def __call__(self, req: Request) -> Result | object:
        self.requests += 1
        if req.method == "GET" and req.path in ("/v1/models", "/models"):
            ids = (self.config.model, *KNOBS)
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "simulator"}
                    for m in ids]
            return Response(200, orjson.dumps({"object": "list", "data": data}))
        if req.method == "GET" and req.path == "/health":
            return Response(200, b'{"status":"ok"}')
        route = self._routes.get((req.method, req.path))
        if route is None:
            known = any(path == req.path for _, path in self._routes)
            return _error(405 if known else 404, f"no route {req.method} {req.path}",
                          "invalid_request_error")
        try:
            body = orjson.loads(req.body)
            self.last_body = body
            model = body.get("model") or self.config.model
            anthropic = req.path.startswith("/v1/messages")
            if model == "sim-error" or self._should_fail():
                if anthropic:
                    return Response(500, api.anthropic_error("simulated upstream failure", "api_error"))
                return _error(500, "simulated upstream failure", "server_error")
            if model == "sim-ratelimit":
                if anthropic:
                    return Response(429, api.anthropic_error("simulated rate limit", "rate_limit_error"))
                return _error(429, "simulated rate limit", "requests", "rate_limit_exceeded")
            result = route(body, model)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            return _error(400, f"malformed request: {exc!r}", "invalid_request_error")
        delay = self.config.latency_ms / 1000 + (self.config.slow_s if model == "sim-slow"
                                                 else 0.0)
        return _later(delay, result) if delay > 0 else result

    def _should_fail(self) -> bool:
        # Request k fails when floor(k * rate) steps up: exactly `rate` of any long run,
        # no randomness, so a test can predict which requests fail.
        self._inference += 1
        k, rate = self._inference, self.config.fail_rate
        return rate > 0 and int(k * rate) > int((k - 1) * rate)

    def _plan(self, body: dict, model: str, prompt_tokens: int):
        limit = body.get("max_completion_tokens", body.get("max_tokens", body.get("max_output_tokens")))
        n_max = self.config.default_max_tokens if limit is None else int(limit)
        n = max(0, min(n_max, self.config.completion_tokens))
        finish = "length" if limit is not None and n == n_max else "stop"
        use = oa.usage(prompt_tokens, n)
        if not self.config.usage or model == "sim-nousage":
            use = None
        return f"sim-{self.requests}", int(time.time()), oa.filler(n), finish, use

    def _stream_usage(self, body: dict, use: dict | None) -> dict | None:
        opts = body.get("stream_options") or {}
        return use if opts.get("include_usage") else None

    def _chat(self, body: dict, model: str) -> Result:
        messages = body["messages"]
        if not isinstance(messages, list):
            raise TypeError("messages must be a list")
        rid, created, pieces, finish, use = self._plan(
            body, model, oa.chat_prompt_tokens(messages))
        rid = "chatcmpl-" + rid
        if body.get("stream"):
            use = self._stream_usage(body, use)
            events = oa.chat_events(rid, model, created, pieces, finish, use)
            return Stream(events, self.config.chunk_delay_ms / 1000)
        return Response(200, oa.chat_body(rid, model, created, pieces, finish, use))

    def _completions(self, body: dict, model: str) -> Result:
        rid, created, pieces, finish, use = self._plan(
            body, model, oa.input_tokens(body["prompt"]))
        rid = "cmpl-" + rid
        if body.get("stream"):
            use = self._stream_usage(body, use)
            events = oa.completion_events(rid, model, created, pieces, finish, use)
            return Stream(events, self.config.chunk_delay_ms / 1000)
        return Response(200, oa.completion_body(rid, model, created, pieces, finish, use))

    def _embeddings(self, body: dict, model: str) -> Result:
        raw = body["input"]
        batch = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        use = None
        if self.config.usage and model != "sim-nousage":
            use = oa.usage(oa.input_tokens(batch), 0)
        dims = int(body.get("dimensions") or self.config.embedding_dims)
        return Response(200, oa.embeddings_body(model, batch, dims, use))

    def _responses(self, body: dict, model: str) -> Result:
        rid, created, pieces, _, use = self._plan(body, model, api.responses_prompt_tokens(body))
        if use is not None:
            use = api.responses_usage(use["prompt_tokens"], use["completion_tokens"], model == "sim-cache")
        if self.usage_patch is not None:
            use = self.usage_patch
        if body.get("stream"):
            events = api.response_events(rid, model, created, pieces, use)
            return Stream(events, self.config.chunk_delay_ms / 1000)
        return Response(200, api.response_body(rid, model, created, pieces, use,
                                               body.get("previous_response_id")))

    def _messages(self, body: dict, model: str) -> Result:
        rid, _, pieces, finish, use = self._plan(body, model, api.messages_prompt_tokens(body))
        finish = "max_tokens" if finish == "length" else "end_turn"
        if use is not None:
            use = api.messages_usage(use["prompt_tokens"], use["completion_tokens"], model == "sim-cache")
        if self.usage_patch is not None:
            use = self.usage_patch
        if body.get("stream"):
            events = api.message_events(rid, model, pieces, finish, use)
            return Stream(events, self.config.chunk_delay_ms / 1000)
        return Response(200, api.message_body(rid, model, pieces, finish, use))

    def _count_tokens(self, body: dict, model: str) -> Result:
        return Response(200, orjson.dumps({"input_tokens": api.messages_prompt_tokens(body)}))
