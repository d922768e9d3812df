"""The anomalies list's parameters and its opaque cursor; every refusal is a 400 naming the parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from domain.anomaly.detection import KINDS
from domain.ids import ID_RULE, is_valid_id
from domain.services.anomalies import IncidentFilter
from gateway import errors
from gateway.api import cursors
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
    return cursors.encode_cursor(_CURSOR, before)


def decode_cursor(cursor: str | None) -> int | None:
    return cursors.decode_cursor(_CURSOR, cursor, "the newest incidents")


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
