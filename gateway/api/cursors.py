"""Opaque paging cursors for newest-first lists: "before this sequence number", base64 of a prefix
naming the list, so a cursor from one list is refused by another and paging can change without
breaking callers."""

from __future__ import annotations

import base64
import binascii

from gateway import errors

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
