"""The stream readers of the Responses and Messages APIs for the relay (gateway/v1/streaming.py;
readers in responses_api.py, messages_api.py): which events end the answer, where the usage
comes from, the model renamed."""

from __future__ import annotations

from domain.pricing import Usage
from gateway.v1.messages_api import MessagesStream, parse_usage
from gateway.v1.responses_api import ResponsesStream


def test_a_messages_stream_takes_its_input_from_the_start_and_its_output_from_the_delta():
    reader = MessagesStream({"model": "client-name"})
    start = {"type": "message_start", "message": {"model": "upstream-name", "usage": {
        "input_tokens": 5, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 3,
        "output_tokens": 1}}}
    assert reader.step(start) == (0, False) and start["message"]["model"] == "client-name"
    text = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "héllo"}}
    assert reader.step(text) == (6, False)
    assert reader.step({"type": "content_block_delta", "delta": {"type": "input_json_delta",
                                                                 "partial_json": '{"a"'}}) == (4, False)
    # before the delta (a client gone now): the start's input side, an output of the deltas seen
    assert reader.usage == Usage(15, 2, cached_tokens=7, cache_write_tokens=3)
    assert reader.step({"type": "message_delta", "usage": {"output_tokens": 9}}) == (0, True)
    assert reader.usage == Usage(15, 9, cached_tokens=7, cache_write_tokens=3)
    assert reader.step({"type": "message_stop"}) == (0, True)


def test_a_message_delta_that_repeats_the_input_side_overrides_the_start():
    reader = MessagesStream({"model": "m"})
    reader.step({"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}})
    reader.step({"type": "message_delta", "usage": {"input_tokens": 6, "cache_read_input_tokens": 2,
                                                    "cache_creation_input_tokens": None, "output_tokens": 4}})
    assert reader.usage == Usage(8, 4, cached_tokens=2)


def test_malformed_anthropic_usage_is_none_not_a_crash():
    assert parse_usage({"input_tokens": -1, "output_tokens": 2}) is None
    assert parse_usage({"input_tokens": True, "output_tokens": 2}) is None
    assert parse_usage({"output_tokens": 2}) is None
    assert parse_usage("usage") is None


def test_a_responses_stream_ends_at_completed_incomplete_failed_or_error_and_renames_the_model():
    for end in ("response.completed", "response.incomplete", "response.failed"):
        reader = ResponsesStream({"model": "client-name"})
        created = {"type": "response.created", "response": {"model": "upstream", "usage": None}}
        assert reader.step(created) == (0, False) and created["response"]["model"] == "client-name"
        assert reader.step({"type": "response.output_text.delta", "delta": "abc"}) == (3, False)
        assert reader.step({"type": "response.function_call_arguments.delta", "delta": "{}"}) == (2, False)
        done = {"type": end, "response": {"model": "upstream", "usage": {
            "input_tokens": 10, "output_tokens": 6, "input_tokens_details": {"cached_tokens": 4},
            "output_tokens_details": {"reasoning_tokens": 2}}}}
        assert reader.step(done) == (0, True)
        assert reader.usage == Usage(10, 6, cached_tokens=4, reasoning_tokens=2)
    assert ResponsesStream({"model": "m"}).step({"type": "error", "message": "x"}) == (0, True)


def test_an_event_left_unchanged_is_sent_as_the_upstream_wrote_it_and_a_renamed_one_re_encoded():
    for reader, renamed in ((ResponsesStream({"model": "mine"}), {"type": "response.created", "response": {
            "model": "theirs"}}), (MessagesStream({"model": "mine"}), {"type": "message_start", "message": {
                "model": "theirs"}})):
        raw = b'{"type":"x.delta",  "delta":"a"}'  # the upstream's own spacing survives
        delta = {"type": "x.delta", "delta": "a"}
        reader.step(delta)
        assert reader.encode(delta, raw) == b"event: x.delta\ndata: " + raw + b"\n\n"
        reader.step(renamed)
        assert b'"model":"mine"' in reader.encode(renamed, b'{"model":"theirs"}')
