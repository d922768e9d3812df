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

from collections.abc import Callable
from hmac import compare_digest
from typing import Any, NamedTuple

from domain.pricing import Usage
from gateway import errors
from gateway.context import ModelRoute
from gateway.v1.estimate import reported_count
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
    if payload.get("background") and route.keeps_state:
        # Not even where the upstream keeps state: the answer is generated after this request
        # ends and its usage is read when it is fetched, which this gateway does not serve, so
        # its output would go unmetered (yet be there to continue with previous_response_id).
        raise errors.bad_request(f"'background': true is not served: the model server for '{route.name}' "
                                 "would generate the answer after this request ends, where this gateway "
                                 "cannot meter it. Send the request without 'background' (stream it for "
                                 "a long answer)", "background", code="stateful_request_not_supported")
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


# Toward an upstream that keeps state, every key's responses live in one account there, so an
# id alone would fetch any key's conversation. The gateway hands out each response id sealed
# with an HMAC of the key it served and the id; only that key's seal is unsealed and forwarded.
SEAL = "_ml"
MARK_CHARS = 24  # 96 bits of HMAC-SHA256


class Owner(NamedTuple):
    """Seals the response ids a key is given, and opens only the ones given to it."""

    hmac: Callable[[str], str]  # the gateway's HMAC under its server secret (GatewayContext.hmac)
    key_id: str

    def _mark(self, upstream_id: str) -> str:
        return self.hmac(f"meterline-response\x00{self.key_id}\x00{upstream_id}")[:MARK_CHARS]

    def seal(self, upstream_id: str) -> str:
        return f"{upstream_id}{SEAL}{self._mark(upstream_id)}"

    def unseal(self, sealed: str) -> str | None:
        upstream_id, seal, mark = sealed.rpartition(SEAL)
        if not seal or not upstream_id or not compare_digest(mark, self._mark(upstream_id)):
            return None
        return upstream_id

    def seal_answer(self, response: Any) -> bool:
        """Seals a response object's id (and the previous one it names) in place; whether it had one."""
        if not isinstance(response, dict) or not isinstance(response.get("id"), str):
            return False
        response["id"] = self.seal(response["id"])
        if isinstance(response.get("previous_response_id"), str):
            response["previous_response_id"] = self.seal(response["previous_response_id"])
        return True


def check_owned(payload: dict[str, Any], route: ModelRoute, owner: Owner) -> None:
    """Toward an upstream that keeps state: `previous_response_id` must be one this key was given
    (else a 404 that tells nothing of whose it is), and is forwarded as the upstream's id.
    Conversations and item references name state no key here owns, so they are refused."""
    previous = payload.get("previous_response_id")
    if previous is not None:
        if not isinstance(previous, str):
            raise errors.bad_request("'previous_response_id' must be a string: the id of an earlier "
                                     "response", "previous_response_id")
        upstream_id = owner.unseal(previous)
        if upstream_id is None:
            raise errors.not_found(f"no response '{errors.shown(previous)}' of this key: "
                                   "'previous_response_id' must be the id of a response this gateway "
                                   "gave this key",
                                   code="response_not_found", param="previous_response_id")
        payload["previous_response_id"] = upstream_id
    if payload.get("conversation") is not None:
        raise errors.bad_request(f"'conversation' is not served: the model server for '{route.name}' "
                                 "keeps every key's conversations in one account, so a conversation id "
                                 "cannot be tied to this key. Chain responses with 'previous_response_id' "
                                 "or send the earlier turns in 'input'", "conversation",
                                 code="stateful_request_not_supported")
    value = payload.get("input")
    if isinstance(value, list) and any(item.get("type") == "item_reference" for item in value):
        raise errors.bad_request(f"an 'item_reference' input item names an item the model server for "
                                 f"'{route.name}' keeps for every key alike, so it cannot be tied to this "
                                 "key. Send the item itself in 'input', or chain with "
                                 "'previous_response_id'", "input", code="stateful_request_not_supported")


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
    body.pop("n", None)  # not a field of this API: one answer is what was reserved
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
    if not all(map(reported_count, values)):
        return None
    return Usage(values[0], values[1], min(cached, values[0]), reasoning_tokens=min(reasoning, values[1]))


def _detail(details: Any, name: str) -> Any:
    return (details.get(name) or 0) if isinstance(details, dict) else 0


def usage_of_answer(data: dict[str, Any]) -> Usage | None:
    """The answer's usage; an output of text is at least one token, whatever the server says."""
    return at_least(parse_usage(data.get("usage")), 1 if text_bytes(data) else 0)


def at_least(usage: Usage | None, completion_tokens: int) -> Usage | None:
    """`usage` with no fewer completion tokens than `completion_tokens`: what was seen generated
    (a non-empty delta is at least one token) bounds an upstream's count from below."""
    if usage is None or usage.completion_tokens >= completion_tokens:
        return usage
    return Usage(usage.prompt_tokens, completion_tokens, usage.cached_tokens,
                 usage.cache_write_tokens, usage.reasoning_tokens)


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
        self.reported: Usage | None = None  # the server's count, from the event that ends the answer
        self.deltas = 0  # non-empty deltas relayed: a lower bound of the output tokens
        self.rewritten = False  # the last event stepped: its upstream JSON no longer holds
        self.owner: Owner | None = None  # set toward an upstream that keeps state: ids are sealed

    @property
    def usage(self) -> Usage | None:
        """The server's count, never below what the stream was seen to generate."""
        return at_least(self.reported, self.deltas)

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
            if self.owner is not None and self.owner.seal_answer(response):
                self.rewritten = True
            if kind in ENDS:
                self.reported = parse_usage(response.get("usage")) or self.reported
        if kind in ENDS:
            return 0, True
        delta = event.get("delta")
        if isinstance(kind, str) and kind.endswith(".delta") and isinstance(delta, str) and delta:
            self.deltas += 1
            return len(delta.encode()), False
        return 0, False

    @staticmethod
    def error_event(message: str, code: str) -> dict[str, Any]:
        return {"type": "error", "code": code, "message": message, "param": None}
