"""The audit trail on a real store, and its rows edited directly, as someone with database access
(but not the signing key) would edit them."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from adapters.eventstore.environments import postgres_env, sqlite_env
from domain.audit import ChainedEntry
from domain.services.audit_events import CHECKPOINTS_ID, ENTRIES_ID, AuditEntryRecorded


class AuditRows:
    """The trail's stored rows: entries by version (= seq), and the checkpoints stream."""

    placeholder = "?"

    def _run(self, query: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _id(self, stream: uuid.UUID) -> Any:
        raise NotImplementedError

    def _q(self, query: str) -> str:
        return query.replace("?", self.placeholder)

    def states(self) -> dict[int, dict[str, Any]]:
        rows = self._run(self._q("SELECT originator_version, state FROM {t} WHERE originator_id = ? "
                                 "ORDER BY originator_version"), (self._id(ENTRIES_ID),))
        return {version: json.loads(bytes(state)) for version, state in rows}

    def record(self, version: int) -> ChainedEntry:
        state = dict(self.states()[version])
        state.pop("timestamp")
        return ChainedEntry.from_record(state)

    def put(self, version: int, state: dict[str, Any] | bytes) -> None:
        data = state if isinstance(state, bytes) else json.dumps(state).encode()
        self._run(self._q("UPDATE {t} SET state = ? WHERE originator_id = ? AND originator_version = ?"),
                  (data, self._id(ENTRIES_ID), version))

    def put_record(self, version: int, record: ChainedEntry) -> None:
        """Overwrites a row's entry, keeping its other stored fields (the write timestamp)."""
        self.put(version, {**self.states()[version], **record.as_record()})

    def delete_from(self, version: int, upto: int | None = None, stream: uuid.UUID = ENTRIES_ID) -> None:
        self._run(self._q("DELETE FROM {t} WHERE originator_id = ? AND originator_version >= ? "
                          "AND originator_version <= ?"), (self._id(stream), version, upto or 2**62))

    def shift_from(self, version: int) -> None:
        """Moves every entry from `version` one place up (two steps: the key is checked per row)."""
        for step in (1_000_000, -999_999):
            self._run(self._q("UPDATE {t} SET originator_version = originator_version + ? "
                              "WHERE originator_id = ? AND originator_version >= ?"),
                      (step, self._id(ENTRIES_ID), version if step > 0 else version + 1_000_000))

    def insert(self, version: int, record: ChainedEntry, like: int) -> None:
        state = {**self.states()[like], **record.as_record()}
        self._run(self._q("INSERT INTO {t} (originator_id, originator_version, topic, state) "
                          "VALUES (?, ?, ?, ?)"),
                  (self._id(ENTRIES_ID), version, AuditEntryRecorded.TOPIC, json.dumps(state).encode()))

    def delete_checkpoints(self) -> None:
        self.delete_from(1, stream=CHECKPOINTS_ID)


class SQLiteRows(AuditRows):
    def __init__(self, path: Path) -> None:
        self.path = path

    def _id(self, stream: uuid.UUID) -> str:
        return stream.hex

    def _run(self, query: str, params: tuple = ()) -> list[tuple]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute(query.format(t="stored_events"), params).fetchall()


class PostgresRows(AuditRows):
    placeholder = "%s"

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema

    def _id(self, stream: uuid.UUID) -> uuid.UUID:
        return stream

    def _run(self, query: str, params: tuple = ()) -> list[tuple]:
        table = sql.Identifier(self.schema, "audit_events")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(sql.SQL(query).format(t=table), params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def audit_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], AuditRows]]:
    """A fresh store for the audit trail (a SQLite file, or a PostgreSQL schema) and its raw rows."""
    if request.param == "sqlite":
        env = sqlite_env(tmp_path / "store")
        yield env, SQLiteRows(Path(env["AUDIT_SQLITE_DBNAME"]))
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"a_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield postgres_env(f"{dsn}?schema={schema}"), PostgresRows(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
