"""Server-sent events as the gateway writes them: OpenAI's chat chunks are bare `data:` lines;
the named-event APIs (Responses, Messages) also name each event's type, as both SDKs read it."""

from __future__ import annotations

from typing import Any

import orjson


def data_event(event: dict[str, Any], raw: bytes | None = None) -> bytes:
    """`data: <json>`; chat chunks are always written again (their model is renamed)."""
    return b"data: " + orjson.dumps(event) + b"\n\n"


def named_event(event: dict[str, Any], raw: bytes | None = None) -> bytes:
    """`event: <type>` then `data: <json>`; a type that could break the framing is left out.
    `raw`: the upstream's own JSON of an event left unchanged, sent as it came (no re-encoding:
    most events of a stream are deltas nobody rewrites)."""
    kind = event.get("type")
    head = b"event: " + kind.encode() + b"\n" if isinstance(kind, str) and kind.isprintable() else b""
    # JSON may hold a bare \r between its tokens, which an SSE reader takes for a line's end
    return head + b"data: " + (orjson.dumps(event) if raw is None or b"\r" in raw else raw) + b"\n\n"
