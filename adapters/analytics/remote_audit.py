"""The audit index over the analytics socket: the calls `remote_server` answers under `/audit/`
and the JSON both sides write (`RemoteAnalytics` is the client)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.audit import ChainedEntry
from domain.ports.audit_index import AuditFilter, AuditIndex, AuditIndexQuery


def audit_query_data(query: AuditIndexQuery) -> dict[str, Any]:
    where = query.where
    return {"actions": sorted(where.actions), "actor": where.actor, "targets": sorted(where.targets),
            "start": where.start.isoformat() if where.start else None,
            "end": where.end.isoformat() if where.end else None,
            "before": query.before, "upto": query.upto, "limit": query.limit}


def audit_query_of(data: dict[str, Any]) -> AuditIndexQuery:
    def moment(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text)
    where = AuditFilter(actions=frozenset(data["actions"]), actor=data["actor"],
                        targets=frozenset(data["targets"]), start=moment(data["start"]),
                        end=moment(data["end"]))
    return AuditIndexQuery(where, before=data["before"], upto=data["upto"], limit=data["limit"])


def audit_answer(index: AuditIndex, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if path == "/audit/insert":
        index.insert_audit([ChainedEntry.from_record(row) for row in body["entries"]])
        return {}
    if path == "/audit/entries":
        return {"rows": [chained.as_record() for chained in index.audit_entries(audit_query_of(body))]}
    if path == "/audit/position":
        return {"position": index.audit_position()}
    if path == "/audit/delete":
        index.delete_audit()
        return {}
    raise KeyError(f"no such call {path!r}; the audit calls are /audit/insert, /audit/entries, "
                   "/audit/position, /audit/delete")
