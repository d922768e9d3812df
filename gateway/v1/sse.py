"""Server-sent events as the gateway writes them: OpenAI's chat chunks are bare `data:` lines;
the named-event APIs (Responses, Messages) also name each event's type, as both SDKs read it."""

from __future__ import annotations

from typing import Any

import orjson


def data_event(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def named_event(event: dict[str, Any]) -> bytes:
    """`event: <type>` then `data: <json>`; a type that could break the framing is left out."""
    kind = event.get("type")
    head = b"event: " + kind.encode() + b"\n" if isinstance(kind, str) and kind.isprintable() else b""
    return head + b"data: " + orjson.dumps(event) + b"\n\n"
