"""The anomalies list's parameters and its opaque cursor; every refusal is a 400 naming the parameter."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.anomaly.detection import KINDS
from domain.ids import ID_RULE, is_valid_id
from domain.services.anomalies import IncidentFilter
from gateway import errors
from gateway.api.schemas import DATE_RULE, utc_instant

STATES = ("open", "resolved", "all")
MAX_LIMIT = 1000
_CURSOR = "anomalies-before:"


@dataclass(frozen=True)
class AnomalyQuery:
    where: IncidentFilter
    before: int | None
    limit: int


def anomaly_query(state: str | None, kind: str | None, user_id: str | None, start: str | None,
                  end: str | None, cursor: str | None, limit: str | None) -> AnomalyQuery:
    if state is not None and state not in STATES:
        raise errors.bad_request(f"state must be one of {', '.join(STATES)}, got {_shown(state)}", "state")
    if kind is not None and kind not in KINDS:
        raise errors.bad_request(f"kind must be one of {', '.join(KINDS)}, got {_shown(kind)}", "kind")
    if user_id is not None and not is_valid_id(user_id):
        raise errors.bad_request(f"user_id must be {ID_RULE}; got {_shown(user_id)}", "user_id")
    begin, finish = _instant(start, "from"), _instant(end, "to")
    if begin is not None and finish is not None and finish <= begin:
        raise errors.bad_request("'to' must be after 'from'", "to")
    where = IncidentFilter(state or "all", kind, user_id, begin, finish)
    return AnomalyQuery(where, decode_cursor(cursor), _limit(limit))


def encode_cursor(before: int | None) -> str | None:
    """Opaque to callers, so the paging can change without breaking them."""
    if before is None:
        return None
    return base64.urlsafe_b64encode(f"{_CURSOR}{before}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        if len(cursor) > 80:
            raise ValueError("too long")
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        number = text.removeprefix(_CURSOR)
        if not text.startswith(_CURSOR) or not number.isdigit() or len(number) > 18 or int(number) < 1:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeError):
        raise errors.bad_request("cursor is not one this API returned; pass next_cursor from the previous "
                                 "page, or leave it out for the newest incidents", "cursor") from None
    return int(number)


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        if value.isascii() and value.isdigit() and len(value) <= 12:
            return utc_instant(datetime.fromtimestamp(int(value), UTC))
        return utc_instant(datetime.fromisoformat(value))
    except (ValueError, OverflowError, OSError):
        raise errors.bad_request(f"'{name}' must be {DATE_RULE}, or Unix seconds; got {_shown(value)}",
                                 name) from None


def _limit(value: str | None) -> int:
    if value is None:
        return 100
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not 1 <= int(value) <= MAX_LIMIT:
        raise errors.bad_request(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {_shown(value)}",
                                 "limit")
    return int(value)


def _shown(value: str) -> str:
    return repr(value[:40] + ("…" if len(value) > 40 else ""))
