"""OpenAI's Responses API (`POST /v1/responses`): what the chat path needs to know of it.

Its request checks before anything is reserved, the body the upstream gets, its usage
(`input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
`output_tokens_details.reasoning_tokens`) and its event stream, where `response.completed`
(or `.incomplete`, `.failed`) carries the usage and ends the answer.

Meterline stores no conversation: toward an upstream that does not keep state itself, `store`
is sent false. A client that asks for `store: true`, `previous_response_id`, `conversation` or
`background` is refused with a 400 rather than served: each one expects a later request to find
a response stored somewhere, and with store false nothing is, so the failure would surface
later, far from its cause.
"""

from __future__ import annotations

from typing import Any

from domain.pricing import Usage
from gateway import errors
from gateway.context import ModelRoute
from gateway.v1.sse import named_event

ENDS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
# Fields naming something stored on the upstream side, and what to send instead
STATEFUL = {"previous_response_id": "Send the earlier turns again in 'input'",
            "conversation": "Send the earlier turns again in 'input'",
            "prompt": "Send the prompt's text in 'instructions' or 'input'"}


def check_request(payload: dict[str, Any], route: ModelRoute) -> None:
    """A 400 naming the field for a body the gateway cannot bound or must not forward."""
    value = payload.get("input")
    if isinstance(value, list):
        if not all(isinstance(item, dict) for item in value):
            raise errors.bad_request("each item of 'input' must be an object, such as "
                                     "{\"role\": \"user\", \"content\": \"…\"}", "input")
    elif not isinstance(value, str):
        raise errors.bad_request("'input' is required and must be a string or a list of input "
                                 "items", "input")
    instructions = payload.get("instructions")
    if instructions is not None and not isinstance(instructions, str | list):
        raise errors.bad_request("'instructions' must be a string", "instructions")
    tools = payload.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise errors.bad_request("'tools' must be a list of tool objects", "tools")
    store = payload.get("store")
    if store is not None and not isinstance(store, bool):
        raise errors.bad_request("'store' must be true or false", "store")
    if route.keeps_state:
        return
    stored_elsewhere = "this gateway keeps no conversation state and the model server for " \
        f"'{route.name}' is not configured to keep it (upstream_keeps_state)"
    if store:
        raise errors.bad_request(f"'store': true is not served: {stored_elsewhere}. Send "
                                 "\"store\": false (or leave it out) and keep the output yourself",
                                 "store", code="store_not_supported")
    for field, instead in STATEFUL.items():
        if payload.get(field) is not None:
            raise errors.bad_request(f"'{field}' is not served: {stored_elsewhere}. {instead}", field,
                                     code="stateful_request_not_supported")
    if payload.get("background"):
        raise errors.bad_request(f"'background': true is not served: {stored_elsewhere}, and a "
                                 "background response is fetched later from that state",
                                 "background", code="stateful_request_not_supported")
    if isinstance(value, list) and any(item.get("type") == "item_reference" for item in value):
        raise errors.bad_request(f"an 'item_reference' input item names a stored item, and "
                                 f"{stored_elsewhere}. Send the item itself in 'input'", "input",
                                 code="stateful_request_not_supported")


def stored_context(payload: dict[str, Any], route: ModelRoute) -> str | None:
    """The field by which a request to an upstream that keeps state brings in text it does not
    carry (an earlier response, a conversation, a stored prompt): no reservation bounds it."""
    if not route.keeps_state:
        return None
    return next((field for field in STATEFUL if payload.get(field) is not None), None)


def requested_max_tokens(payload: dict[str, Any]) -> int | None:
    value = payload.get("max_output_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.bad_request(f"'max_output_tokens' must be a positive integer, got {value!r}",
                                 "max_output_tokens")
    return value


def upstream_fields(body: dict[str, Any], max_output_tokens: int, route: ModelRoute) -> None:
    """The cap the reservation covers, and no other output limit the upstream might prefer."""
    body["max_output_tokens"] = max_output_tokens
    body.pop("max_tokens", None)
    body.pop("max_completion_tokens", None)
    if not route.keeps_state:
        body["store"] = False


def parse_usage(raw: Any) -> Usage | None:
    """A Responses usage block, or None if it is missing or malformed."""
    if not isinstance(raw, dict):
        return None
    inputs, outputs = raw.get("input_tokens"), raw.get("output_tokens", 0)
    cached = _detail(raw.get("input_tokens_details"), "cached_tokens")
    reasoning = _detail(raw.get("output_tokens_details"), "reasoning_tokens")
    values = (inputs, outputs or 0, cached, reasoning)
    if not all(type(v) is int and v >= 0 for v in values):
        return None
    return Usage(values[0], values[1], min(cached, values[0]), reasoning_tokens=min(reasoning, values[1]))


def _detail(details: Any, name: str) -> Any:
    return (details.get(name) or 0) if isinstance(details, dict) else 0


def usage_of_answer(data: dict[str, Any]) -> Usage | None:
    return parse_usage(data.get("usage"))


def text_bytes(data: dict[str, Any]) -> int:
    """UTF-8 bytes of what a whole answer generated: output texts, tool arguments, reasoning."""
    return _generated(data.get("output"), 0)


GENERATED_FIELDS = ("text", "arguments", "refusal")


def _generated(value: Any, depth: int) -> int:
    if depth > 16:  # output items nest a few levels; an upstream's odd answer must not recurse on
        return 0
    total = 0
    if isinstance(value, list):
        for item in value:
            total += _generated(item, depth + 1)
    elif isinstance(value, dict):
        for name, item in value.items():
            if name in GENERATED_FIELDS and isinstance(item, str):
                total += len(item.encode())
            elif isinstance(item, list | dict):
                total += _generated(item, depth + 1)
    return total


class ResponsesStream:
    """Reads a Responses event stream for the relay (gateway/v1/streaming.py)."""

    tail = b""  # no [DONE]: the last event names the end

    def __init__(self, payload: dict[str, Any]) -> None:
        self.client_model = payload["model"]
        self.usage: Usage | None = None
        self.rewritten = False  # the last event stepped: its upstream JSON no longer holds

    def encode(self, event: dict[str, Any], raw: bytes | None = None) -> bytes:
        return named_event(event, None if self.rewritten else raw)

    def step(self, event: dict[str, Any]) -> tuple[int, bool]:
        """(generated text bytes, whether the event ends the answer); renames the model."""
        kind = event.get("type")
        response = event.get("response")
        self.rewritten = False
        if isinstance(response, dict):
            if "model" in response:
                response["model"] = self.client_model
                self.rewritten = True
            if kind in ENDS:
                self.usage = parse_usage(response.get("usage")) or self.usage
        if kind in ENDS:
            return 0, True
        delta = event.get("delta")
        if isinstance(kind, str) and kind.endswith(".delta") and isinstance(delta, str):
            return len(delta.encode()), False
        return 0, False

    @staticmethod
    def error_event(message: str, code: str) -> dict[str, Any]:
        return {"type": "error", "code": code, "message": message, "param": None}
