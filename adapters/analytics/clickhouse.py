"""The analytics store on a ClickHouse server via clickhouse-connect: the chDB adapter's SQL, over HTTP.

A thin shell over `sql`, `figures_sql`, `migrate` and `arrow`, so both adapters send the same
statements. The client is made on first use (making one contacts the server, and applies the
migrations the store lacks), and without an HTTP session id so several threads may query at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import clickhouse_connect

from adapters.analytics.arrow import facts_to_arrow
from adapters.analytics.audit_sql import (
    AUDIT_INSERT_SETTINGS,
    AUDIT_TABLE,
    DELETE_SQL,
    GAP_SQL,
    POSITION_SQL,
    audit_arrow,
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
from adapters.analytics.schema import USAGE_TABLE
from adapters.analytics.sql import (
    COUNT_SQL,
    GENERATION_SQL,
    NEXT_GENERATION_SQL,
    batch_token,
    distinct_facts,
    insert_settings,
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


class ClickHouseAnalytics:
    """AnalyticsStore on a ClickHouse server; give a DSN (`http://user:pw@host:8123/db`) or parts."""

    def __init__(self, dsn: str | None = None, *, host: str = "localhost", port: int = 8123,
                 username: str = "default", password: str = "", database: str = "default",
                 rollup_timezone: str = "UTC",
                 connect: Callable[..., Any] = clickhouse_connect.get_client) -> None:
        if dsn is not None:
            self._settings: dict[str, Any] = {"dsn": dsn}
        else:
            self._settings = {"host": host, "port": port, "username": username,
                              "password": password, "database": database}
        self._settings["autogenerate_session_id"] = False
        self._connect = connect
        self._zone = check_zone(rollup_timezone)  # until connected: then the one the store records
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def rollup_timezone(self) -> str:
        """The zone of the daily rollup's calendar days, as the store recorded it when made."""
        self._get_client()
        return self._zone

    def ensure_schema(self) -> None:
        """Applies the migrations the store lacks (also done on first use)."""
        self._get_client()

    def insert_usage(self, facts: Sequence[RequestMetered], batch_id: str | None = None) -> None:
        """Inserts the facts as one Arrow table: one part on the server per batch."""
        facts = distinct_facts(facts)
        if not facts:
            return
        client = self._get_client()
        token = None
        if batch_id is not None:
            token = batch_token(batch_id, int(client.query(GENERATION_SQL).result_rows[0][0]))
        client.insert_arrow(USAGE_TABLE, facts_to_arrow(facts), settings=insert_settings(token))

    def recover_batch(self, facts: Sequence[RequestMetered], batch_id: str) -> None:
        """As on chDB (`ChdbAnalytics.recover_batch` says why): the facts again, undeduplicated, then
        the rollups' hours and days they fall in summed again from the raw facts. A replicated
        server would not need it; a single server's tables dedup as chDB's do."""
        if facts := distinct_facts(facts):
            self.insert_usage(facts)
            for statement in recovery_statements(facts, self.rollup_timezone):
                self._get_client().command(statement.sql, parameters=statement.params)

    def figures(self, query: AnalyticsQuery) -> list[Figures]:
        """Dashboard figures per group, from the smallest rollup that answers exactly."""
        zone = self.rollup_timezone
        statement = figures_statement(query, plan(query, zone), zone)
        result = self._get_client().query(statement.sql, parameters=statement.params)
        return figures_from_rows(statement, result.result_rows)

    def delete_since(self, moment: datetime | None) -> None:
        """Deletes the facts at or after `moment` (all when None) from every table, waiting for it."""
        client = self._get_client()
        for statement in delete_statements(moment, self.rollup_timezone):
            client.command(statement.sql, parameters=statement.params)
        client.command(NEXT_GENERATION_SQL)

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group."""
        statement = usage_statement(query)
        # clickhouse-connect sends {name:Type} values as server-side parameters and escapes them
        result = self._get_client().query(statement.sql, parameters=statement.params)
        return totals_from_rows(result.result_rows)

    def query_rows(self, sql: str, params: dict[str, str]) -> list[list[Any]]:
        """Runs a statement with `{name:Type}` parameters; its rows, as on chDB (the anomaly scan)."""
        return [list(row) for row in self._get_client().query(sql, parameters=params).result_rows]

    def recent_requests(self, user_id: str, limit: int) -> list[RecentRequest]:
        """The user's last `limit` requests, newest first; a request's parts are one entry."""
        statement = recent_statement(user_id, limit)
        result = self._get_client().query(statement.sql, parameters=statement.params)
        return recent_from_rows(result.result_rows)

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        return int(self._get_client().query(COUNT_SQL).result_rows[0][0])

    # ----- the audit index (domain.ports.audit_index): as on chDB ------------------------------

    def insert_audit(self, entries: Sequence[ChainedEntry]) -> None:
        """Inserts the entries a month (a part) at a time; a seq held already is kept once."""
        for run in month_runs(entries):
            self._get_client().insert_arrow(AUDIT_TABLE, audit_arrow(run), settings=AUDIT_INSERT_SETTINGS)

    def audit_entries(self, query: AuditIndexQuery) -> list[ChainedEntry]:
        """The matching entries, newest first."""
        statement = entries_statement(query)
        return entries_from_rows(self._get_client().query(statement.sql, parameters=statement.params)
                                 .result_rows)

    def audit_position(self) -> int:
        """The n such that entries 1..n are held and none after."""
        client = self._get_client()
        position = position_of(client.query(POSITION_SQL).result_rows[0])
        return position if position is not None else int(client.query(GAP_SQL).result_rows[0][0])

    def delete_audit(self) -> None:
        """Forgets every audit entry, for a rebuild."""
        self._get_client().command(DELETE_SQL)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                client = self._connect(**self._settings)
                self._zone = migrate(client.command, lambda sql: client.query(sql).result_rows, self._zone)
                self._client = client
            return self._client
