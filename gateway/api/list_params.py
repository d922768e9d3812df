"""The query parameters every paged, newest-first list reads alike (the audit trail, anomalies):
its time bounds, its page size, and an opaque cursor ("before this sequence number", base64 of a
prefix naming the list, so a cursor from one list is refused by another and paging can change
without breaking callers). Each error says what was wrong and what to send."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from gateway import errors
from gateway.api.schemas import DATE_RULE, utc_instant

MAX_CURSOR = 80
MAX_DIGITS = 18


def encode_cursor(prefix: str, before: int | None) -> str | None:
    if before is None:
        return None
    return base64.urlsafe_b64encode(f"{prefix}{before}".encode()).decode().rstrip("=")


def decode_cursor(prefix: str, cursor: str | None, newest: str) -> int | None:
    """The sequence number a cursor of this list holds; a 400 saying what to send for any other
    text (`newest` names what leaving it out gives, e.g. "the newest entries")."""
    if cursor is None:
        return None
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError("too long")
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        number = text.removeprefix(prefix)
        if not text.startswith(prefix) or not number.isdigit() or len(number) > MAX_DIGITS or int(number) < 1:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeError):
        raise errors.bad_request("cursor is not one this API returned; pass next_cursor from the previous "
                                 f"page, or leave it out for {newest}", "cursor") from None
    return int(number)


def instant(value: str | None, name: str) -> datetime | None:
    """An ISO instant (see DATE_RULE) or Unix seconds, as aware UTC; None when absent."""
    if value is None:
        return None
    try:
        if value.isascii() and value.isdigit() and len(value) <= 12:
            return utc_instant(datetime.fromtimestamp(int(value), UTC))
        return utc_instant(datetime.fromisoformat(value))
    except (ValueError, OverflowError, OSError):
        raise errors.bad_request(f"'{name}' must be {DATE_RULE}, or Unix seconds; got "
                                 f"{shown(value)}", name) from None


def page_size(value: str | None, most: int, default: int = 100) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not 1 <= int(value) <= most:
        raise errors.bad_request(f"limit must be a whole number from 1 to {most}, got {shown(value)}",
                                 "limit")
    return int(value)


def shown(value: str) -> str:
    """A value as an error message quotes it: at most 40 characters, quoted (errors.shown)."""
    return f"'{errors.shown(value, 40)}'"
