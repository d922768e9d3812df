"""What differs between the /v1 APIs once a request is admitted: where an answer's usage and
generated text are, how an error looks to the client, and how a stream is read.

Chat, completions and embeddings share OpenAI's shapes; Responses shares OpenAI's error shape
but has its own usage and event stream; Messages has Anthropic's for all three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from starlette.responses import Response

from domain.pricing import Usage
from gateway import errors
from gateway.v1 import messages_api, responses_api
from gateway.v1.metering import choice_text_bytes, parse_usage
from gateway.v1.streaming import ChatStream, StreamReader


class Dialect(NamedTuple):
    usage: Callable[[dict[str, Any]], Usage | None]  # of a whole answer
    text_bytes: Callable[[dict[str, Any]], int]       # generated in a whole answer
    render: Callable[[errors.GatewayError], Response]  # an error the client sees
    events: Callable[[dict[str, Any]], StreamReader]   # its stream's reader, from the request
    anthropic: bool = False


def _render_openai(exc: errors.GatewayError) -> Response:
    return exc.response()


OPENAI = Dialect(lambda data: parse_usage(data.get("usage")), choice_text_bytes, _render_openai, ChatStream)
DIALECTS = {
    "chat": OPENAI, "completions": OPENAI, "embeddings": OPENAI,
    "responses": Dialect(responses_api.usage_of_answer, responses_api.text_bytes, _render_openai,
                         responses_api.ResponsesStream),
    "messages": Dialect(messages_api.usage_of_answer, messages_api.text_bytes,
                        messages_api.error_response, messages_api.MessagesStream, anthropic=True),
}


def anthropic_upstream_error(status: int, body: bytes, model: str) -> Response:
    """An upstream's 4xx with a message in Anthropic's shape; anything else a clear 502."""
    message = messages_api.upstream_error_message(body)
    if 400 <= status < 500 and message is not None:
        return messages_api.error_response(errors.GatewayError(
            status, f"the model server for '{model}' refused the request: {message}",
            "invalid_request_error", "upstream_refused"))
    return messages_api.error_response(errors.upstream_failed(
        f"the model server for '{model}' answered HTTP {status}; try again later"))
