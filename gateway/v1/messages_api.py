"""Anthropic's Messages API (`POST /v1/messages`): its checks, usage, stream and error shape.

Anthropic's `input_tokens` counts only the prompt tokens neither read from nor written to
the prompt cache, so the fact's prompt tokens are input + cache read + cache creation, of
which cache read is `cached_tokens` and cache creation `cache_write_tokens`, each at its own
price. A stream reports the input side in `message_start` and the output (and, from newer
servers, the input again) in `message_delta`, which ends the answer with `message_stop`.

Errors on these routes are in Anthropic's shape, so the Anthropic SDK raises its own
exception classes: {"type": "error", "error": {"type", "message"}, "request_id"}.
"""

from __future__ import annotations

from typing import Any

import orjson

from domain.pricing import Usage
from gateway import errors
from gateway.context import ModelRoute
from gateway.responses import JsonBytesResponse
from gateway.v1.estimate import reported_count
from gateway.v1.responses_api import at_least
from gateway.v1.sse import named_event

ENDS = frozenset({"message_delta", "message_stop", "error"})
ERROR_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
              404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
              500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error"}
DELTA_TEXT = ("text", "partial_json", "thinking")


def check_request(payload: dict[str, Any], route: ModelRoute) -> None:
    """A 400 naming the field for a body the gateway cannot bound or Anthropic's API refuses."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise errors.bad_request("'messages' is required and must be a list of message objects "
                                 "like {\"role\": \"user\", \"content\": \"…\"}", "messages")
    if payload.get("max_tokens") is None:
        raise errors.bad_request("'max_tokens' is required by the Messages API: the most tokens "
                                 "the answer may use, e.g. \"max_tokens\": 1024", "max_tokens")
    system = payload.get("system")
    if system is not None and not isinstance(system, str | list):
        raise errors.bad_request("'system' must be a string or a list of text blocks", "system")
    tools = payload.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise errors.bad_request("'tools' must be a list of tool objects", "tools")


def requested_max_tokens(payload: dict[str, Any]) -> int:
    value = payload.get("max_tokens")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.bad_request(f"'max_tokens' must be a positive integer, got {value!r}", "max_tokens")
    return value


def upstream_fields(body: dict[str, Any], max_tokens: int, route: ModelRoute) -> None:
    """The cap the reservation covers, and the model's default stop sequences."""
    body["max_tokens"] = max_tokens
    body.pop("max_completion_tokens", None)
    body.pop("max_output_tokens", None)
    body.pop("n", None)  # not a field of this API: one answer is what was reserved
    if route.stop and body.get("stop_sequences") is None:
        body["stop_sequences"] = list(route.stop)


def parse_usage(raw: Any, base: dict[str, Any] | None = None) -> Usage | None:
    """An Anthropic usage block (over `base`, a stream's message_start usage), or None."""
    if not isinstance(raw, dict):
        return None
    merged = {**(base or {}), **{k: v for k, v in raw.items() if v is not None}}
    values = (merged.get("input_tokens"), merged.get("output_tokens", 0),
              merged.get("cache_read_input_tokens") or 0, merged.get("cache_creation_input_tokens") or 0)
    if not all(map(reported_count, values)):
        return None
    uncached, output, read, written = values
    return Usage(uncached + read + written, output, read, written)


def usage_of_answer(data: dict[str, Any]) -> Usage | None:
    """The answer's usage; an output of text is at least one token, whatever the server says."""
    return at_least(parse_usage(data.get("usage")), 1 if text_bytes(data) else 0)


def text_bytes(data: dict[str, Any]) -> int:
    """UTF-8 bytes of what a whole answer generated: texts, thinking, tool inputs as JSON."""
    total = 0
    for block in data.get("content") or []:
        if not isinstance(block, dict):
            continue
        for name in ("text", "thinking"):
            if isinstance(block.get(name), str):
                total += len(block[name].encode())
        if "input" in block:
            total += len(orjson.dumps(block["input"]))
    return total


class MessagesStream:
    """Reads a Messages event stream for the relay (gateway/v1/streaming.py)."""

    tail = b""  # no [DONE]: the last event names the end

    def __init__(self, payload: dict[str, Any]) -> None:
        self.client_model = payload["model"]
        self.reported: Usage | None = None  # message_delta's count (over message_start's)
        self._started: dict[str, Any] = {}  # message_start's usage: the input side
        self.deltas = 0  # non-empty deltas relayed: a lower bound of the output tokens
        self.rewritten = False  # the last event stepped: its upstream JSON no longer holds

    @property
    def usage(self) -> Usage | None:
        """The server's count, never below what the stream was seen to generate; before
        message_delta (a client gone mid-stream) message_start's input side and those deltas."""
        reported = self.reported or (parse_usage(self._started) if self._started else None)
        return at_least(reported, self.deltas)

    def encode(self, event: dict[str, Any], raw: bytes | None = None) -> bytes:
        return named_event(event, None if self.rewritten else raw)

    def step(self, event: dict[str, Any]) -> tuple[int, bool]:
        """(generated text bytes, whether the event ends the answer); renames the model."""
        kind = event.get("type")
        self.rewritten = False
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict):
                generated = sum(len(delta[n].encode()) for n in DELTA_TEXT if isinstance(delta.get(n), str))
                self.deltas += generated > 0
                return generated, False
            return 0, False
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message = event["message"]
            if "model" in message:
                message["model"] = self.client_model
                self.rewritten = True
            if isinstance(message.get("usage"), dict):
                self._started = message["usage"]
        elif kind == "message_delta":
            self.reported = parse_usage(event.get("usage"), self._started) or self.reported
        return 0, kind in ENDS

    @staticmethod
    def error_event(message: str, code: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "api_error", "message": message}}


def error_response(exc: errors.GatewayError) -> JsonBytesResponse:
    """A gateway error in Anthropic's shape, with its request id (a refusal's) if it has one."""
    body: dict[str, Any] = {"type": "error", "error": {
        "type": ERROR_TYPE.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error"),
        "message": exc.message}}
    headers = exc.headers
    if exc.request_id is not None:
        body["request_id"] = exc.request_id
        headers = {**headers, "request-id": exc.request_id}
    return JsonBytesResponse(orjson.dumps(body), exc.status, headers)


def upstream_error_message(body: bytes) -> str | None:
    """The message of an upstream's error body in either API's shape, if it has one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None
