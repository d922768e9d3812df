"""BusMessage <-> CloudEvents 1.0 structured-mode JSON bytes, shared by every bus adapter.

The partitioning key travels as the standard `partitionkey` extension (CloudEvents
partitioning extension), so a journal line or a Kafka value is a complete event.
`data` must be JSON-native (str keys; str, int, float, bool, None, list, dict) for the
round trip to be exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.ports.bus import BusMessage

CONTENT_TYPE = "application/cloudevents+json"  # the Kafka header for structured mode
_REQUIRED = ("id", "source", "type", "subject", "time", "data")
_RESERVED = frozenset(
    {"specversion", "datacontenttype", "dataschemaversion", "partitionkey", *_REQUIRED,
     "dataschema", "data_base64"}
)
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")  # the CloudEvents attribute-name rule


def encode(message: BusMessage) -> bytes:
    """The message as one line of CloudEvents JSON (no newline inside)."""
    if message.time.tzinfo is None:
        raise ValueError(f"event {message.id}: time must be timezone-aware, got {message.time}")
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": message.id,
        "source": message.source,
        "type": message.type,
        "subject": message.subject,
        "time": _format_time(message.time),
        "datacontenttype": "application/json",
        "dataschemaversion": message.schema_version,
        "partitionkey": message.key,
    }
    for name, value in message.extensions.items():
        if not _EXTENSION_NAME.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"event {message.id}: {name!r} is not a usable extension name "
                             "(1-20 lowercase letters or digits, not a CloudEvents attribute)")
        if not isinstance(value, str):
            raise ValueError(f"event {message.id}: extension {name!r} must be a str")
        event[name] = value
    event["data"] = message.data
    try:
        return orjson.dumps(event)
    except TypeError as error:  # orjson.JSONEncodeError subclasses TypeError
        raise ValueError(f"event {message.id}: data is not JSON-serialisable: {error}") from None


def decode(raw: bytes, key: str | None = None) -> BusMessage:
    """The message in `raw`; `key` stands in when the event has no `partitionkey`."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not a CloudEvent: invalid JSON ({error})") from None
    if not isinstance(event, dict):
        raise ValueError(f"not a CloudEvent: expected a JSON object, got {type(event).__name__}")
    if event.get("specversion") != "1.0":
        raise ValueError(f"not a CloudEvents 1.0 event: specversion is {event.get('specversion')!r}")
    missing = [name for name in _REQUIRED if name not in event]
    if missing:
        raise ValueError(f"CloudEvent {event.get('id')!r} lacks {', '.join(missing)}")
    content_type = event.get("datacontenttype", "application/json")
    if content_type != "application/json":
        raise ValueError(f"CloudEvent {event['id']!r}: datacontenttype {content_type!r} "
                         "is not application/json")
    for name in ("id", "source", "type", "subject", "time"):
        _require(event, name, str)
    _require(event, "data", dict)
    key = event.get("partitionkey", key)
    if not isinstance(key, str):
        raise ValueError(f"CloudEvent {event['id']!r} has no partitionkey and no key was given")
    version = event.get("dataschemaversion", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"CloudEvent {event['id']!r}: dataschemaversion must be an integer")
    extensions = {name: value for name, value in event.items() if name not in _RESERVED}
    for name, value in extensions.items():
        if not isinstance(value, str):
            raise ValueError(f"CloudEvent {event['id']!r}: extension {name!r} must be a string")
    return BusMessage(
        id=event["id"], type=event["type"], source=event["source"], subject=event["subject"],
        time=_parse_time(event["id"], event["time"]), data=event["data"], key=key,
        schema_version=version, extensions=extensions,
    )


def _require(event: dict[str, Any], name: str, kind: type) -> None:
    if not isinstance(event[name], kind):
        raise ValueError(f"CloudEvent {event.get('id')!r}: {name} must be a JSON "
                         f"{'string' if kind is str else 'object'}")


def _format_time(moment: datetime) -> str:
    # isoformat, unlike strftime, zero-pads years below 1000
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(event_id: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"CloudEvent {event_id!r}: time {text!r} is not RFC 3339") from None
    if moment.tzinfo is None:
        raise ValueError(f"CloudEvent {event_id!r}: time {text!r} has no UTC offset")
    return moment.astimezone(UTC)
