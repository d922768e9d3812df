"""The in-memory twin's Responses and Anthropic Messages answers and their event streams.

Same rules as `memory.py` (a text costs ceil(UTF-8 bytes / 4) tokens, 3 more per input item
or message; the answer is `max_output_tokens` / `max_tokens`, default 16, one-token words),
with `instructions` / `system` counted as text. A model named `*-cache` reports prompt-cache
and reasoning use: Responses cached = input // 2 and reasoning = output // 2; Messages cache
read = prompt // 2 and cache creation = prompt // 4 (Anthropic's input_tokens is the rest).
"""

from __future__ import annotations

from typing import Any

import orjson


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    return (len(text.encode()) + 3) // 4


def responses_answer(request: dict[str, Any], model: str, text: str, n: int) -> dict[str, Any]:
    value = request.get("input", "")
    items = [{"content": value}] if isinstance(value, str) else value
    prompt = _tokens(_text(request.get("instructions"))) + sum(
        _tokens(_text(i.get("content"))) + 3 for i in items if isinstance(i, dict))
    cache = model.endswith("-cache")
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": prompt // 2 if cache else 0},
             "output_tokens": n, "output_tokens_details": {"reasoning_tokens": n // 2 if cache else 0},
             "total_tokens": prompt + n}
    return {"id": "resp_memory", "object": "response", "created_at": 0, "model": model,
            "status": "completed", "usage": usage,
            "output": [{"type": "message", "id": "msg_memory", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


def messages_answer(request: dict[str, Any], model: str, text: str, n: int) -> dict[str, Any]:
    messages = request.get("messages") or []
    prompt = _tokens(_text(request.get("system"))) + sum(
        _tokens(_text(m.get("content"))) + 3 for m in messages if isinstance(m, dict))
    read, created = (prompt // 2, prompt // 4) if model.endswith("-cache") else (0, 0)
    return {"id": "msg_memory", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt - read - created, "cache_read_input_tokens": read,
                      "cache_creation_input_tokens": created, "output_tokens": n}}


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    lines: list[bytes] = []
    for event in events:
        lines += [b"event: " + event["type"].encode(), b"data: " + orjson.dumps(event), b""]
    return lines


def responses_events(data: dict[str, Any]) -> list[bytes]:
    """created, one text delta, completed (carrying the usage)."""
    text = data["output"][0]["content"][0]["text"]
    started = {**data, "status": "in_progress", "output": [], "usage": None}
    return _lines([{"type": "response.created", "response": started},
                   {"type": "response.output_text.delta", "item_id": "msg_memory", "delta": text},
                   {"type": "response.completed", "response": data}])


def messages_events(data: dict[str, Any]) -> list[bytes]:
    """message_start (input usage), one text delta, message_delta (output usage), message_stop."""
    usage = data["usage"]
    start = {**data, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    return _lines([{"type": "message_start", "message": start},
                   {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                   {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": data["content"][0]["text"]}},
                   {"type": "content_block_stop", "index": 0},
                   {"type": "message_delta", "delta": {"stop_reason": data["stop_reason"]},
                    "usage": {"output_tokens": usage["output_tokens"]}},
                   {"type": "message_stop"}])
