"""The audit search's parameters, its opaque cursor and its CSV; every refusal is a 400 naming
the parameter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from domain.audit import ChainedEntry
from domain.audit.entry import ACTION
from domain.ports.audit_index import AuditFilter
from gateway import errors
from gateway.api import list_params
from gateway.api.list_params import shown
from reports.writers.csv_text import csv_bytes

MAX_LIMIT = 1000
MAX_TYPES = 20
MAX_TEXT = 200
_CURSOR = "audit-before:"
COLUMNS = ("seq", "time", "actor", "action", "target", "source_ip", "request_id", "details",
           "prev_hash", "entry_hash")
@dataclass(frozen=True)
class AuditQuery:
    where: AuditFilter
    before: int | None
    limit: int
    csv: bool


def audit_query(type: str | None, actor: str | None, target: str | None, start: str | None,
                end: str | None, cursor: str | None, limit: str | None, format: str | None) -> AuditQuery:
    actions = frozenset(_types(type)) if type else frozenset()
    begin, finish = list_params.instant(start, "from"), list_params.instant(end, "to")
    if begin is not None and finish is not None and finish <= begin:
        raise errors.bad_request("'to' must be after 'from'", "to")
    if format not in (None, "json", "csv"):
        raise errors.bad_request(f"format must be json or csv, got {shown(format)}", "format")
    where = AuditFilter(actions=actions, actor=_text(actor, "actor"),
                        targets=frozenset({t}) if (t := _text(target, "target")) else frozenset(),
                        start=begin, end=finish)
    return AuditQuery(where, decode_cursor(cursor), list_params.page_size(limit, MAX_LIMIT), format == "csv")


def encode_cursor(before: int | None) -> str | None:
    return list_params.encode_cursor(_CURSOR, before)


def decode_cursor(cursor: str | None) -> int | None:
    return list_params.decode_cursor(_CURSOR, cursor, "the newest entries")


def csv_response(entries: list[ChainedEntry], next_cursor: str | None,
                 projection: dict[str, Any] | None = None) -> Response:
    rows = []
    for chained in entries:
        row = chained.as_record()
        row["details"] = json.dumps(row["details"], sort_keys=True, ensure_ascii=False)
        rows.append([row[c] for c in COLUMNS])
    headers = {"content-disposition": 'attachment; filename="audit.csv"'}
    if next_cursor:
        headers["x-next-cursor"] = next_cursor
    for name, value in (projection or {}).items():  # x-audit-source, x-audit-lag-entries, …
        if value is not None:
            headers[f"x-audit-{name.replace('_', '-')}"] = str(value)
    return Response(csv_bytes(COLUMNS, rows), media_type="text/csv; charset=utf-8", headers=headers)


def _types(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or len(names) > MAX_TYPES:
        raise errors.bad_request(f"type is one to {MAX_TYPES} comma-separated actions such as "
                                 "KeyRevoked,AdminActionPerformed", "type")
    for name in names:
        if not ACTION.fullmatch(name):
            raise errors.bad_request(f"type {shown(name)} is not an action name (letters, digits, "
                                     "_ . : -, a letter first), e.g. KeyRevoked", "type")
    return names


def _text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_TEXT or not value.isprintable():
        raise errors.bad_request(f"{name} must be 1-{MAX_TEXT} printable characters, such as "
                                 f"{'user:alice' if name == 'actor' else 'key:<id>'}", name)
    return value
