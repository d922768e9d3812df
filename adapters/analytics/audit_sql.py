"""The audit index's statements and insert frame, shared by the chDB and ClickHouse server adapters.

Entries go in as an Arrow table shaped like `audit_entries` (migration 0004), never deduplicated
by insert token: the table is a ReplacingMergeTree by seq and is read FINAL, so a page inserted
twice is harmless, and a kill -9 that cost a part (ClickHouse notes a token before it commits
the part) cannot make a retry of the page a refused no-op.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import pyarrow as pa

from adapters.analytics.sql import Statement, format_time, parse_time
from domain.audit import AuditEntry, ChainedEntry
from domain.audit.entry import canonical_json
from domain.ports.audit_index import AuditIndexQuery, check_index_query

AUDIT_TABLE = "audit_entries"
AUDIT_SCHEMA = pa.schema([
    ("seq", pa.uint64()),
    ("time", pa.timestamp("us", tz="UTC")),
    ("actor", pa.string()),
    ("action", pa.string()),
    ("target", pa.string()),
    ("details", pa.string()),
    ("source_ip", pa.string()),
    ("request_id", pa.string()),
    ("prev_hash", pa.string()),
    ("entry_hash", pa.string()),
])
AUDIT_COLUMNS = tuple(AUDIT_SCHEMA.names)
# One statement's settings: no token, no dedup by content (a rebuild inserts what it deleted).
AUDIT_INSERT_SETTINGS = {"insert_deduplicate": "0", "deduplicate_insert": "disable"}
_TIME = "DateTime64(6, 'UTC')"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_FINAL = "SETTINGS do_not_merge_across_partitions_select_final = 1"  # copies share a month
# The index holds 1..n when its count of distinct seqs is its highest seq; else the first gap.
POSITION_SQL = f"SELECT count(), max(seq) FROM {AUDIT_TABLE} FINAL {_FINAL}"
GAP_SQL = (f"SELECT min(n) - 1 FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n "
           f"FROM {AUDIT_TABLE} FINAL) WHERE seq != n {_FINAL}")
DELETE_SQL = f"TRUNCATE TABLE IF EXISTS {AUDIT_TABLE}"


def month_runs(entries: Sequence[ChainedEntry]) -> list[list[ChainedEntry]]:
    """The entries cut where their month changes: each run is one partition, so one part, and a
    part is inserted whole or not at all. The index therefore never holds a later run without
    the earlier ones, and `audit_position` holds after any crash."""
    ordered = sorted(entries, key=lambda c: c.seq)
    return [list(run) for _, run in groupby(ordered, key=lambda c: (c.entry.time.year, c.entry.time.month))]


def audit_arrow(entries: Sequence[ChainedEntry]) -> pa.Table:
    """The entries as one Arrow table of `audit_entries`' columns."""
    columns: dict[str, list[Any]] = {name: [] for name in AUDIT_COLUMNS}
    for chained in entries:
        entry = chained.entry
        columns["seq"].append(entry.seq)
        columns["time"].append((entry.time - _EPOCH) // _MICROSECOND)  # 10x faster than datetimes
        columns["actor"].append(entry.actor)
        columns["action"].append(entry.action)
        columns["target"].append(entry.target)
        columns["details"].append(canonical_json(dict(entry.details)).decode())
        columns["source_ip"].append(entry.source_ip)
        columns["request_id"].append(entry.request_id)
        columns["prev_hash"].append(chained.prev_hash)
        columns["entry_hash"].append(chained.entry_hash)
    return pa.table(columns, schema=AUDIT_SCHEMA)


def audit_insert_sql() -> str:
    """INSERT INTO audit_entries with its settings inline, for chDB's send_insert (ArrowStream)."""
    rendered = ", ".join(f"{name} = {value if value.isdigit() else repr(value)}"
                         for name, value in AUDIT_INSERT_SETTINGS.items())
    return f"INSERT INTO {AUDIT_TABLE} ({', '.join(AUDIT_COLUMNS)}) SETTINGS {rendered}"


def entries_statement(query: AuditIndexQuery) -> Statement:
    """Newest first: the matching entries with a seq in [1, upto] below `before`, up to `limit`."""
    check_index_query(query)
    where, params, conditions = query.where, {"limit": str(query.limit)}, ["1"]
    if query.before is not None:
        conditions.append("seq < {before:UInt64}")
        params["before"] = str(query.before)
    if query.upto is not None:
        conditions.append("seq <= {upto:UInt64}")
        params["upto"] = str(query.upto)
    if where.actor is not None:
        conditions.append("actor = {actor:String}")
        params["actor"] = where.actor
    # one parameter per name: the same text for chDB and the server (no Array parameters)
    for column, names in (("action", where.actions), ("target", where.targets)):
        if names:
            placeholders = []
            for i, name in enumerate(sorted(names)):
                placeholders.append(f"{{{column}{i}:String}}")
                params[f"{column}{i}"] = name
            conditions.append(f"{column} IN ({', '.join(placeholders)})")
    for name, operator in (("start", ">="), ("end", "<")):
        moment = getattr(where, name)
        if moment is not None:
            conditions.append(f"time {operator} {{{name}:{_TIME}}}")
            params[name] = format_time(moment)
    sql = (f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {AUDIT_TABLE} FINAL WHERE {' AND '.join(conditions)} "
           f"ORDER BY seq DESC LIMIT {{limit:UInt32}} {_FINAL}")
    return Statement(sql, params)


def entries_from_rows(rows: Iterable[Sequence[Any]]) -> list[ChainedEntry]:
    """Result rows of `entries_statement` as the trail's entries (their hashes as stored)."""
    found = []
    for seq, time, actor, action, target, details, source_ip, request_id, prev_hash, own in rows:
        entry = AuditEntry(time=parse_time(time), actor=str(actor), action=str(action), target=str(target),
                           details=json.loads(details), source_ip=source_ip, request_id=request_id,
                           seq=int(seq))  # int(): JSON output quotes 64-bit integers
        found.append(ChainedEntry(entry, str(prev_hash), str(own)))
    return found


def position_of(row: Sequence[Any]) -> int | None:
    """The index's position from POSITION_SQL's row; None when it has a gap (GAP_SQL says where).
    A gap needs rows removed behind the projector's back: inserts are whole months in seq order."""
    count, highest = int(row[0]), int(row[1] or 0)
    return highest if count == highest else None
