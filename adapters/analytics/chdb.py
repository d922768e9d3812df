"""The analytics store on chDB: ClickHouse in this process, its tables in a directory on disk.

chDB runs one embedded server per process, on one data directory at a time, and the
directory is locked while open: exactly one process owns it (the `projector`, or
`meterline up`). Open a second directory only after closing the first. Calls from
several threads are serialized with a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from adapters.analytics.arrow import arrow_stream_bytes, facts_to_arrow
from adapters.analytics.schema import SCHEMA
from adapters.analytics.sql import (
    COUNT_SQL,
    INSERT_SQL,
    escape_param,
    recent_from_rows,
    recent_statement,
    totals_from_rows,
    usage_statement,
)
from domain.ports.analytics import RecentRequest, UsageQuery, UsageTotals
from domain.usage import RequestMetered

if TYPE_CHECKING:
    from chdb.session import Session


class ChdbAnalytics:
    """AnalyticsStore on an on-disk chDB session; `close()` releases the directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._lock = threading.Lock()
        self._session: Session | None = None

    def ensure_schema(self) -> None:
        """Opens the directory and creates the tables if missing (also done on first use)."""
        with self._lock:
            self._open()

    def insert_usage(self, facts: Sequence[RequestMetered]) -> None:
        """Inserts the facts as one Arrow stream: 3-5x JSONEachRow, 1000x an INSERT per row."""
        if not facts:
            return
        payload = arrow_stream_bytes(facts_to_arrow(facts))
        # the session's own connection: the Session class does not expose send_insert
        with self._lock, self._open()._conn.send_insert(INSERT_SQL, "ArrowStream") as insert:
            insert.append(payload)
            insert.finish()

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group."""
        statement = usage_statement(query)
        return totals_from_rows(self._rows(statement.sql, statement.params))

    def recent_requests(self, user_id: str, limit: int) -> list[RecentRequest]:
        """The user's last `limit` requests, newest first; a request's parts are one entry."""
        statement = recent_statement(user_id, limit)
        return recent_from_rows(self._rows(statement.sql, statement.params))

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        return int(self._rows(COUNT_SQL, {})[0][0])

    def query_rows(self, sql: str, params: dict[str, str]) -> list[list[Any]]:
        """Runs a statement with `{name:Type}` parameters; its rows, if any. For reports and benchmarks."""
        return self._rows(sql, params)

    def close(self) -> None:
        """Closes the session, so this or another directory can be opened."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _rows(self, sql: str, params: dict[str, str]) -> list[list[Any]]:
        # chDB hands parameters to the engine verbatim, in the escaped text form
        escaped = {name: escape_param(value) for name, value in params.items()}
        with self._lock:
            result = self._open().query(sql, "JSONCompact", params=escaped)
        output = result.bytes()
        return orjson.loads(output)["data"] if output else []  # statements without a result say nothing

    def _open(self) -> Session:
        if self._session is None:
            # Imported on first use: the embedded engine adds ~220 MB to a process's RSS, which a
            # gateway that never answers a usage query need not carry.
            from chdb.session import Session
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                self._session = Session(str(self.data_dir))
            except RuntimeError as error:
                raise RuntimeError(
                    f"cannot open the chDB data directory {self.data_dir}: {error}. chDB runs one "
                    "embedded server per process on one directory, and one process per directory: "
                    "close the other store, or stop the other process using it") from error
            for ddl in SCHEMA:  # idempotent; a store is usable from its first call
                self._session.query(ddl)
        return self._session
