"""A notification body read by the port's convention: its CloudEvents type, its text, its data.

Shared by the e-mail and webhook channels so both render one body the same way.
"""

from __future__ import annotations

import json
from typing import Any

from domain.ports.notifier import CONVENTION_KEYS, DEFAULT_TYPE, Notification, NotificationFailed


def follows_convention(body: dict[str, Any]) -> bool:
    """True for `{"type", "text", "data"}` with a string type and text: a body the worker built."""
    return (set(body) == CONVENTION_KEYS and isinstance(body["type"], str)
            and isinstance(body["text"], str))


def event_type(notification: Notification) -> str:
    body = notification.body
    return body["type"] if follows_convention(body) else DEFAULT_TYPE


def text_of(notification: Notification) -> str:
    """What a person reads: the body's text, or a rendering of a body sent as is."""
    body = notification.body
    return body["text"] if follows_convention(body) else render(body)


def data_of(notification: Notification) -> Any:
    """What a program reads: the body's data, or the whole of a body sent as is."""
    body = notification.body
    return body["data"] if follows_convention(body) else body


def render(body: dict[str, Any]) -> str:
    """One `key: value` line per field, nested values as compact JSON."""
    return "\n".join(f"{key}: {value if isinstance(value, str) else _json(value)}"
                     for key, value in body.items())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def to_json(value: Any) -> bytes:
    """UTF-8 JSON; a value that is not JSON (a Decimal, a datetime) fails permanently, as a retry
    would fail the same way: the sender should have converted it."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise NotificationFailed(f"the notification body is not JSON: {error}", permanent=True) from None
