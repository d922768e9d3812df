"""How a streamed event is written to the client: the upstream's own bytes when nothing in the
event changed, written again when the gateway rewrote it, and never with a bare \\r that an SSE
reader would take for the end of a line."""

from __future__ import annotations

import orjson

from gateway.v1.sse import named_event
from gateway.v1.streaming import ChatStream


def relayed(stream: ChatStream, raw: bytes) -> bytes | None:
    event = orjson.loads(raw)
    return None if stream.step(event) is None else stream.encode(event, raw)


def chunk(model: str, text: str = "hi", **extra: object) -> bytes:
    return orjson.dumps({"id": "c1", "model": model, "choices": [
        {"index": 0, "delta": {"content": text}, "finish_reason": None}], **extra})


def test_an_unchanged_chunk_goes_out_as_the_upstream_wrote_it() -> None:
    raw = b'{"id": "c1",  "model": "sim", "choices": [{"index": 0, "delta": {"content": "hi"}}]}'
    assert relayed(ChatStream({"model": "sim"}), raw) == b"data: " + raw + b"\n\n"


def test_a_chunk_naming_another_model_is_written_again_with_the_clients_name() -> None:
    out = relayed(ChatStream({"model": "my-alias"}), chunk("upstream-model-7b"))
    assert orjson.loads(out.removeprefix(b"data: "))["model"] == "my-alias"


def test_the_usage_the_gateway_asked_for_is_hidden_from_a_client_that_did_not() -> None:
    stream = ChatStream({"model": "sim"})
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert relayed(stream, orjson.dumps({"model": "sim", "choices": [], "usage": usage})) is None
    out = relayed(stream, chunk("sim", usage=usage))  # usage on a content chunk: stripped from it
    assert "usage" not in orjson.loads(out.removeprefix(b"data: "))
    assert stream.usage is not None and stream.usage.total_tokens == 4
    asked = ChatStream({"model": "sim", "stream_options": {"include_usage": True}})
    raw = orjson.dumps({"model": "sim", "choices": [], "usage": usage})
    assert relayed(asked, raw) == b"data: " + raw + b"\n\n"


def test_json_with_a_bare_carriage_return_between_tokens_is_written_again() -> None:
    raw = b'{"model": "sim",\r"choices": [{"index": 0, "delta": {"content": "x"}}]}'
    out = relayed(ChatStream({"model": "sim"}), raw)
    assert b"\r" not in out and orjson.loads(out.removeprefix(b"data: "))["model"] == "sim"
    named = named_event({"type": "response.output_text.delta"}, b'{"type":\r"response.output_text.delta"}')
    assert b"\r" not in named and named.startswith(b"event: response.output_text.delta\ndata: {")
