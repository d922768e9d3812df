"""Responses and Anthropic Messages bodies and event streams for the simulator (issue 15).

Counting rules, exact so tests can predict them (texts as in `openai_shapes.count_tokens`):
- Responses: input_tokens = tokens(instructions) + for a string input tokens(input) + 3, for
  a list the tokens of each item's text content + 3 per item;
- Messages: prompt = tokens(system text) + tokens of each message's text content + 3 per
  message; `input_tokens` is the prompt less what the cache served or took;
- output_tokens = min(max_output_tokens / max_tokens, N) filler words, one token each.
The model `sim-cache` reports cache use: Responses cached_tokens = input // 2 and
reasoning_tokens = output // 2; Messages cache_read = prompt // 2, cache_creation = prompt // 4.
"""

from __future__ import annotations

import orjson

from testkit.simulator.openai_shapes import _text_of, count_tokens


def responses_prompt_tokens(body: dict) -> int:
    value = body["input"]
    items = [{"content": value}] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise TypeError("input must be a string or a list")
    return count_tokens(_text_of(body.get("instructions"))) + sum(
        count_tokens(_text_of(item.get("content"))) + 3 for item in items)


def messages_prompt_tokens(body: dict) -> int:
    messages = body["messages"]
    if not isinstance(messages, list):
        raise TypeError("messages must be a list")
    return count_tokens(_text_of(body.get("system"))) + sum(
        count_tokens(_text_of(m.get("content"))) + 3 for m in messages)


def responses_usage(prompt: int, output: int, cache: bool) -> dict:
    cached, reasoning = (prompt // 2, output // 2) if cache else (0, 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + output}


def messages_usage(prompt: int, output: int, cache: bool) -> dict:
    read, created = (prompt // 2, prompt // 4) if cache else (0, 0)
    return {"input_tokens": prompt - read - created, "cache_read_input_tokens": read,
            "cache_creation_input_tokens": created, "output_tokens": output}


def _response(rid: str, model: str, created: int, text: str | None, use: dict | None,
              previous: str | None = None) -> dict:
    output = [] if text is None else [{
        "type": "message", "id": "msg_" + rid, "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return {"id": "resp_" + rid, "object": "response", "created_at": created, "model": model,
            "status": "completed" if text is not None else "in_progress", "output": output,
            "previous_response_id": previous, "usage": use}


def response_body(rid: str, model: str, created: int, pieces: list[str], use: dict | None,
                  previous: str | None = None) -> bytes:
    body = _response(rid, model, created, "".join(pieces), use, previous)
    if use is None:
        del body["usage"]
    return orjson.dumps(body)


def _event(data: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (data["type"].encode(), orjson.dumps(data))


def response_events(rid: str, model: str, created: int, pieces: list[str], use: dict | None) -> list[bytes]:
    """created, in_progress, item and part added, a delta per piece, the dones, completed."""
    item = "msg_" + rid
    started = _response(rid, model, created, None, None)
    events = [_event({"type": "response.created", "sequence_number": 0, "response": started}),
              _event({"type": "response.in_progress", "sequence_number": 1, "response": started}),
              _event({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
                      "item": {"type": "message", "id": item, "status": "in_progress",
                               "role": "assistant", "content": []}}),
              _event({"type": "response.content_part.added", "sequence_number": 3, "item_id": item,
                      "output_index": 0, "content_index": 0,
                      "part": {"type": "output_text", "text": "", "annotations": []}})]
    seq = 4
    for piece in pieces:
        events.append(_event({"type": "response.output_text.delta", "sequence_number": seq,
                              "item_id": item, "output_index": 0, "content_index": 0,
                              "delta": piece, "logprobs": []}))
        seq += 1
    text = "".join(pieces)
    done = _response(rid, model, created, text, use)
    events += [_event({"type": "response.output_text.done", "sequence_number": seq, "item_id": item,
                       "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
               _event({"type": "response.output_item.done", "sequence_number": seq + 1,
                       "output_index": 0, "item": done["output"][0]}),
               _event({"type": "response.completed", "sequence_number": seq + 2, "response": done})]
    return events


def message_body(rid: str, model: str, pieces: list[str], finish: str, use: dict | None) -> bytes:
    body = {"id": "msg_" + rid, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "".join(pieces)}], "stop_reason": finish,
            "stop_sequence": None}
    if use is not None:
        body["usage"] = use
    return orjson.dumps(body)


def message_events(rid: str, model: str, pieces: list[str], finish: str, use: dict | None) -> list[bytes]:
    """message_start (input usage), a ping, one text block of deltas, message_delta, message_stop."""
    start_usage = None if use is None else {**use, "output_tokens": 1}
    message = {"id": "msg_" + rid, "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events = [_event({"type": "message_start", "message": message}), _event({"type": "ping"}),
              _event({"type": "content_block_start", "index": 0,
                      "content_block": {"type": "text", "text": ""}})]
    events += [_event({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": piece}}) for piece in pieces]
    delta: dict = {"type": "message_delta", "delta": {"stop_reason": finish, "stop_sequence": None}}
    if use is not None:
        delta["usage"] = {"output_tokens": use["output_tokens"]} if "output_tokens" in use else {}
    return [*events, _event({"type": "content_block_stop", "index": 0}), _event(delta),
            _event({"type": "message_stop"})]


def anthropic_error(message: str, kind: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
