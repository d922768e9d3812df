"""One audit entry and its canonical encoding, the bytes its hash is computed over.

The encoding is the JSON Canonicalization Scheme (RFC 8785) restricted to values on which
every JCS implementation and this module agree byte for byte: keys sorted, no whitespace,
UTF-8, strings escaped as JSON requires (`"`, `\\`, and control characters; `\\b \\f \\n \\r
\\t` short, others as `\\u00xx`), integers only (a fraction goes in a string, because float
formatting differs between languages), detail keys in ASCII (so sorting by code point and
by UTF-16 unit agree). Times are RFC 3339 in UTC with six fraction digits and `Z`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from domain.credentials import KEY_PREFIX, TOKEN_PREFIX

MAX_SAFE_INTEGER = 2**53 - 1  # beyond this JavaScript (and many JSON tools) round the number
MAX_TEXT = 2000
MAX_DETAILS = 64
# a letter first: the event store reads a {"_type_", "_data_"} object as a stored class
DETAIL_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
ACTION = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,99}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
SYSTEM = "system"
# A full API key or user token (credentials.py: a prefix and 43 random characters). "mlu-" must
# stand alone, so a model called "qwen-mlu-instruct-…" is left as it is.
SECRET = re.compile(rf"({re.escape(KEY_PREFIX)}[\w-]{{4}})[\w-]{{16,}}"
                    rf"|(?<![\w-])({re.escape(TOKEN_PREFIX)}[\w-]{{4}})[\w-]{{16,}}")
_CANONICAL = "_canonical"  # where an entry keeps its encoded bytes once computed
DetailValue = str | int | bool | None


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of a value made of dicts with ASCII keys, strings, integers, bools, None."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def format_time(at: datetime) -> str:
    """RFC 3339 UTC with microseconds and `Z`: `2025-03-03T09:30:00.000000Z`."""
    if at.tzinfo is None:
        raise ValueError(f"audit times are timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """The inverse of `format_time`; any other spelling of the instant is refused."""
    if not isinstance(text, str) or not TIME.fullmatch(text):
        raise ValueError(f"time {text!r} is not RFC 3339 UTC with six fraction digits and Z")
    return datetime.fromisoformat(text)  # reads the Z as UTC (3.11), several times faster than strptime


@dataclass(frozen=True)
class AuditEntry:
    """Who did what to what, when and from where. `seq` is 0 until the trail assigns it.

    `actor` is `user:<id>`, `key:<display prefix>` or `system`; never a full token or secret.
    `details` is a flat object of strings, integers, bools and nulls."""

    time: datetime
    actor: str
    action: str
    target: str = ""
    details: Mapping[str, DetailValue] = field(default_factory=dict)
    source_ip: str | None = None
    request_id: str | None = None
    seq: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.time, datetime) or self.time.tzinfo is None:
            raise ValueError(f"audit times are timezone-aware datetimes, got {self.time!r}")
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        for name in ("actor", "target", "request_id"):
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, redact(getattr(self, name)))
        _text("actor", self.actor, allow_empty=False)
        if not isinstance(self.action, str) or not ACTION.fullmatch(self.action):
            raise ValueError(f"action {self.action!r} must start with a letter and use letters, "
                             "digits and _ . : - (at most 100 characters)")
        _text("target", self.target)
        object.__setattr__(self, "details", MappingProxyType(_details(self.details)))
        if self.source_ip is not None:
            object.__setattr__(self, "source_ip", _ip(self.source_ip))
        if self.request_id is not None:
            _text("request_id", self.request_id, allow_empty=False)
        seq = self.seq
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SAFE_INTEGER:
            raise ValueError(f"seq must be an integer from 0, got {self.seq!r}")

    def numbered(self, seq: int) -> AuditEntry:
        """This entry with its seq; the other fields were checked when it was made."""
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SAFE_INTEGER:
            raise ValueError(f"seq must be an integer from 1, got {seq!r}")
        numbered = copy(self)
        numbered.__dict__.pop(_CANONICAL, None)
        object.__setattr__(numbered, "seq", seq)
        return numbered

    def as_dict(self) -> dict[str, Any]:
        """The entry as the JSON object whose canonical bytes are hashed."""
        return {"seq": self.seq, "time": format_time(self.time), "actor": self.actor,
                "action": self.action, "target": self.target, "details": dict(self.details),
                "source_ip": self.source_ip, "request_id": self.request_id}

    def canonical(self) -> bytes:
        cached = self.__dict__.get(_CANONICAL)
        if cached is None:
            cached = canonical_json(self.as_dict())
            object.__setattr__(self, _CANONICAL, cached)  # not a field: equality ignores it
        return cached

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Reads an entry back, refusing any field or spelling `as_dict` would not write:
        what an auditor hashes (the object as written) must be what this module hashes."""
        if not isinstance(data, Mapping):
            raise ValueError("an audit entry is a JSON object")
        names = {"seq", "time", "actor", "action", "target", "details", "source_ip", "request_id"}
        if set(data) != names:
            raise ValueError(f"an audit entry has exactly the fields {sorted(names)}; got "
                             f"{sorted(data)}")
        try:
            entry = cls(time=parse_time(data["time"]), actor=data["actor"], action=data["action"],
                        target=data["target"], details=data["details"], source_ip=data["source_ip"],
                        request_id=data["request_id"], seq=data["seq"])
            written = canonical_json(dict(data))
        except (TypeError, UnicodeError) as exc:
            raise ValueError(f"unreadable audit entry: {exc}") from None
        if entry.canonical() != written:
            raise ValueError("the entry is not in its canonical form")
        return entry


def redact(text: str) -> str:
    """`text` with any full key or token cut to its display prefix: a trail is read by many
    and kept for years, so a secret that slipped into an entry must not be stored in it."""
    if "-" not in text:  # every secret has one: most strings skip the search
        return text
    return SECRET.sub(lambda found: f"{found.group(1) or found.group(2)}…", text)


def _text(name: str, value: Any, allow_empty: bool = True) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ValueError(f"{name} must be a{'' if allow_empty else ' non-empty'} string, got {value!r}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is {len(value)} characters, more than {MAX_TEXT}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} holds a lone surrogate, which UTF-8 cannot encode") from None


def _details(details: Any) -> dict[str, DetailValue]:
    if not isinstance(details, Mapping):
        raise ValueError(f"details must be an object, got {type(details).__name__}")
    if len(details) > MAX_DETAILS:
        raise ValueError(f"details has {len(details)} fields, more than {MAX_DETAILS}")
    checked: dict[str, DetailValue] = {}
    for key, value in details.items():
        if not isinstance(key, str) or not DETAIL_KEY.fullmatch(key):
            raise ValueError(f"detail key {key!r} must be 1-64 ASCII letters, digits, _ . -, "
                             "a letter first")
        if isinstance(value, str):
            _text(f"details.{key}", value)
            value = redact(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_SAFE_INTEGER:
                raise ValueError(f"details.{key} = {value} is past ±(2**53 - 1); write it as a string")
        elif value is not None and not isinstance(value, bool):
            raise ValueError(f"details.{key} is a {type(value).__name__}; only strings, integers, "
                             "bools and null are kept (a fraction goes in a string)")
        checked[key] = value
    return checked


def _ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"source_ip must be a string, got {value!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"source_ip {value!r} is not an IPv4 or IPv6 address") from None
