"""The anomalies list's parameters and its opaque cursor; every refusal is a 400 naming the parameter."""

from __future__ import annotations

from dataclasses import dataclass

from domain.anomaly.detection import KINDS
from domain.ids import ID_RULE, is_valid_id
from domain.services.anomalies import IncidentFilter
from gateway import errors
from gateway.api import list_params
from gateway.api.list_params import shown

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
        raise errors.bad_request(f"state must be one of {', '.join(STATES)}, got {shown(state)}", "state")
    if kind is not None and kind not in KINDS:
        raise errors.bad_request(f"kind must be one of {', '.join(KINDS)}, got {shown(kind)}", "kind")
    if user_id is not None and not is_valid_id(user_id):
        raise errors.bad_request(f"user_id must be {ID_RULE}; got {shown(user_id)}", "user_id")
    begin, finish = list_params.instant(start, "from"), list_params.instant(end, "to")
    if begin is not None and finish is not None and finish <= begin:
        raise errors.bad_request("'to' must be after 'from'", "to")
    where = IncidentFilter(state or "all", kind, user_id, begin, finish)
    return AnomalyQuery(where, decode_cursor(cursor), list_params.page_size(limit, MAX_LIMIT))


def encode_cursor(before: int | None) -> str | None:
    return list_params.encode_cursor(_CURSOR, before)


def decode_cursor(cursor: str | None) -> int | None:
    return list_params.decode_cursor(_CURSOR, cursor, "the newest incidents")
