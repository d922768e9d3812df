"""Process recorders for the ledger that also index every recorded fact's event id.

The ledger stores a batch of RequestMetered facts as one event. Exactly-once per fact
comes from a table of fact ids written in the same transaction as that event and the
batch's tracking record: a fact id already present makes the whole transaction fail
with the library's IntegrityError, and `existing_fact_ids` tells the ledger which facts
to drop before it retries. One recorder per store, each passing the same contract tests.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Compressor, IntegrityError, StoredEvent
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteProcessRecorder
from psycopg import sql

FACT_IDS = "fact_ids"  # the keyword the ledger passes its batch's fact ids under


class FastZlibCompressor(Compressor):
    """zlib at level 1: most of the size win on JSON batches at a fraction of the CPU."""

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 1)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)


class PostgresLedgerRecorder(PostgresProcessRecorder):
    @property
    def fact_table(self) -> sql.Composed:
        name = self.events_table_name.removesuffix("_events") + "_fact_ids"
        return sql.SQL("{}.{}").format(sql.Identifier(self.datastore.schema), sql.Identifier(name))

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.get_connection() as conn, conn.transaction():
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (event_id uuid PRIMARY KEY)")
                         .format(self.fact_table))

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        ids = kwargs.get(FACT_IDS)
        if ids:
            curs.execute(sql.SQL("INSERT INTO {} (event_id) SELECT unnest(%s::text[])::uuid")
                         .format(self.fact_table), (list(ids),))

    def existing_fact_ids(self, ids: Sequence[str]) -> set[str]:
        with self.datastore.get_connection() as conn:
            rows = conn.execute(sql.SQL("SELECT event_id FROM {} WHERE event_id = ANY(%s::text[]::uuid[])")
                                .format(self.fact_table), (list(ids),)).fetchall()
        return {str(row["event_id"]) for row in rows}

    def count_facts(self) -> int:
        with self.datastore.get_connection() as conn:
            return conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(self.fact_table)
                                ).fetchone()["n"]


class SQLiteLedgerRecorder(SQLiteProcessRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                "CREATE TABLE IF NOT EXISTS fact_ids (event_id TEXT PRIMARY KEY) WITHOUT ROWID"]

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent],
                       **kwargs: Any) -> Sequence[int] | None:
        returning = super()._insert_events(c, stored_events, **kwargs)
        ids = kwargs.get(FACT_IDS)
        if ids:
            c.executemany("INSERT INTO fact_ids (event_id) VALUES (?)", [(i,) for i in ids])
        return returning

    def existing_fact_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                c.execute(f"SELECT event_id FROM fact_ids WHERE event_id IN ({','.join('?' * len(chunk))})",
                          chunk)
                found.update(row["event_id"] for row in c.fetchall())
        return found

    def count_facts(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT count(*) AS n FROM fact_ids")
            return c.fetchone()["n"]


class MemoryLedgerRecorder(POPOProcessRecorder):
    """The in-memory twin."""

    def __init__(self) -> None:
        super().__init__()
        self._fact_ids: set[str] = set()

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        ids = kwargs.get(FACT_IDS) or ()
        if len(set(ids)) != len(ids) or self._fact_ids.intersection(ids):
            raise IntegrityError("a fact in this batch is already recorded")

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        result = super()._update_table(stored_events, **kwargs)
        self._fact_ids.update(kwargs.get(FACT_IDS) or ())
        return result

    def existing_fact_ids(self, ids: Sequence[str]) -> set[str]:
        return self._fact_ids.intersection(ids)

    def count_facts(self) -> int:
        return len(self._fact_ids)
