"""The analytics store on chDB: ClickHouse in this process, its tables in a directory on disk.

chDB runs one embedded server per process, on one data directory at a time, and the
directory is locked while open: exactly one process owns it (the `projector`, or
`meterline up`). Open a second directory only after closing the first. Calls from
several threads are serialized with a lock. Opening applies the schema migrations
(`migrate.py`) before any other call, so no insert races the rollups' backfill.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from adapters.analytics.arrow import arrow_stream_bytes, facts_to_arrow
from adapters.analytics.audit_sql import (
    DELETE_SQL,
    GAP_SQL,
    POSITION_SQL,
    audit_arrow,
    audit_insert_sql,
    entries_from_rows,
    entries_statement,
    month_runs,
    position_of,
)
from adapters.analytics.figures_sql import (
    delete_statements,
    figures_from_rows,
    figures_statement,
    recovery_statements,
)
from adapters.analytics.migrate import check_zone, migrate
from adapters.analytics.planner import plan
from adapters.analytics.sql import (
    COUNT_SQL,
    GENERATION_SQL,
    NEXT_GENERATION_SQL,
    batch_token,
    distinct_facts,
    escape_param,
    insert_settings,
    insert_sql,
    recent_from_rows,
    recent_statement,
    totals_from_rows,
    usage_statement,
)
from domain.audit import ChainedEntry
from domain.ports.analytics import RecentRequest, UsageQuery, UsageTotals
from domain.ports.audit_index import AuditIndexQuery
from domain.usage import RequestMetered
from domain.usage_figures import AnalyticsQuery, Figures

if TYPE_CHECKING:
    from chdb.session import Session


class ChdbAnalytics:
    """AnalyticsStore on an on-disk chDB session; `close()` releases the directory."""

    def __init__(self, data_dir: Path, rollup_timezone: str = "UTC") -> None:
        self.data_dir = Path(data_dir)
        self._zone = check_zone(rollup_timezone)  # until opened: then the one the store records
        self._lock = threading.Lock()
        self._session: Session | None = None

    @property
    def rollup_timezone(self) -> str:
        """The zone of the daily rollup's calendar days, as the store recorded it when made."""
        with self._lock:
            self._open()
            return self._zone

    def ensure_schema(self) -> None:
        """Opens the directory and applies the migrations it lacks (also done on first use)."""
        with self._lock:
            self._open()

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        """Inserts the facts as one Arrow stream (3-5x JSONEachRow, 1000x an INSERT per row); with a
        `batch_id`, sending the same batch again changes no table, rollups included."""
        facts = distinct_facts(facts)
        if not facts:
            return
        payload = arrow_stream_bytes(facts_to_arrow(facts))
        with self._lock:
            session = self._open()
            token = None if batch_id is None else batch_token(batch_id, self._generation(session))
            # the session's own connection: the Session class does not expose send_insert
            with session._conn.send_insert(insert_sql(insert_settings(token)), "ArrowStream") as insert:
                insert.append(payload)
                insert.finish()

    def recover_batch(self, facts: Sequence[RequestMetered], batch_id: str) -> None:
        """A batch a crash may have cut short, made whole: ClickHouse's non-replicated deduplication
        notes a block's token before it commits the block's part, so a process killed in between
        leaves a table (a view's, or the raw one) that will refuse the batch as seen. The facts go
        in again undeduplicated (the raw table counts them once by FINAL), then the rollups' hours
        and days they fall in are summed again from the raw facts."""
        facts = distinct_facts(facts)
        if not facts:
            return
        self.insert_usage(facts)
        for statement in recovery_statements(facts, self.rollup_timezone):
            self._rows(statement.sql, statement.params)

    def figures(self, query: AnalyticsQuery) -> list[Figures]:
        """Dashboard figures per group, from the smallest rollup that answers exactly."""
        zone = self.rollup_timezone
        statement = figures_statement(query, plan(query, zone), zone)
        return figures_from_rows(statement, self._rows(statement.sql, statement.params))

    def delete_since(self, moment: datetime | None) -> None:
        """Deletes the facts at or after `moment` (all when None) from every table, waiting for it."""
        for statement in delete_statements(moment, self.rollup_timezone):
            self._rows(statement.sql, statement.params)
        self._rows(NEXT_GENERATION_SQL, {})

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

    # ----- the audit index (domain.ports.audit_index) -----------------------------------------

    def insert_audit(self, entries: Sequence[ChainedEntry]) -> None:
        """Inserts the entries a month at a time (a part each, whole or not at all); a seq held
        already is kept once (ReplacingMergeTree by seq, read FINAL)."""
        for run in month_runs(entries):
            payload = arrow_stream_bytes(audit_arrow(run))
            with self._lock, self._open()._conn.send_insert(audit_insert_sql(), "ArrowStream") as insert:
                insert.append(payload)
                insert.finish()

    def audit_entries(self, query: AuditIndexQuery) -> list[ChainedEntry]:
        """The matching entries, newest first."""
        statement = entries_statement(query)
        return entries_from_rows(self._rows(statement.sql, statement.params))

    def audit_position(self) -> int:
        """The n such that entries 1..n are held and none after."""
        position = position_of(self._rows(POSITION_SQL, {})[0])
        return position if position is not None else int(self._rows(GAP_SQL, {})[0][0])

    def delete_audit(self) -> None:
        """Forgets every audit entry, for a rebuild."""
        self._rows(DELETE_SQL, {})

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
            return _json_rows(self._open().query(sql, "JSONCompact", params=escaped))

    def _open(self) -> Session:
        if self._session is None:
            # Imported on first use: the embedded engine adds ~220 MB to a process's RSS, which a
            # gateway that never answers a usage query need not carry.
            from chdb.session import Session
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                session = Session(str(self.data_dir))
            except RuntimeError as error:
                raise RuntimeError(
                    f"cannot open the chDB data directory {self.data_dir}: {error}. chDB runs one "
                    "embedded server per process on one directory, and one process per directory: "
                    "close the other store, or stop the other process using it") from error
            try:
                self._zone = migrate(session.query, lambda sql: _json_rows(session.query(sql, "JSONCompact")),
                                     self._zone)
            except BaseException:
                session.close()  # the next call opens it again and resumes the migrations
                raise
            self._session = session
        return self._session

    @staticmethod
    def _generation(session: Session) -> int:
        return int(_json_rows(session.query(GENERATION_SQL, "JSONCompact"))[0][0])


def _json_rows(result: Any) -> list[list[Any]]:
    output = result.bytes()
    return orjson.loads(output)["data"] if output else []  # statements without a result say nothing
