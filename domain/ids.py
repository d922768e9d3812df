"""Deterministic aggregate ids, so every process derives the same id from a business key."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from uuid import UUID, uuid5

NAMESPACE = UUID("6d1c8a52-3f0e-4b7e-9a51-6f0f6c1e2a10")

# User and team ids appear in URL paths, log lines and report file names, so they are plain
# ASCII with no separator a path, a shell or a terminal would read: e-mail addresses pass.
ID_MAX_LENGTH = 128
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._@+-]{{0,{ID_MAX_LENGTH - 1}}}$"
ID_RULE = (f"1 to {ID_MAX_LENGTH} characters: ASCII letters, digits and . _ @ + -, starting with a "
           "letter or digit (no '/', spaces, control or bidi characters), e.g. 'john@acme.com'")
_ID = re.compile(ID_PATTERN.strip("^$"))


def is_valid_id(value: str) -> bool:
    """Whether `value` may name a new user or team: it follows ID_RULE."""
    return _ID.fullmatch(value) is not None


def stable_id(kind: str, *parts: str) -> UUID:
    """The aggregate id for a business key such as ("budget", "team", "research")."""
    return uuid5(NAMESPACE, "/".join((kind, *parts)))


def event_id_of(originator_id: UUID, version: int) -> UUID:
    """The idempotency key of a stored domain event, the same on every relay attempt."""
    return uuid5(originator_id, str(version))


def random_id() -> str:
    """A random (version 4) UUID as text: the same as str(uuid4()), at a third of its cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def time_ordered_id(unix_ms: int) -> str:
    """A version 7 UUID as text: `unix_ms` (wall-clock milliseconds, 48 bits), then random bits.

    Request ids are made this way so that an id alone says roughly when its request was
    served, and `meterline explain` can look in the ledger's batches of that moment instead
    of reading the whole log. The time is the host's wall clock, read by the caller, never
    the injected Clock: it is a search hint, not a business time."""
    raw = bytearray(unix_ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_time(text: str) -> datetime | None:
    """When a `time_ordered_id` was made (to the millisecond); None for any other id."""
    try:
        parsed = UUID(text)
    except (ValueError, TypeError, AttributeError):
        return None
    if parsed.version != 7:
        return None
    return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=UTC)
