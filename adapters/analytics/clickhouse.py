"""The analytics store on a ClickHouse server via clickhouse-connect: the chDB adapter's SQL, over HTTP.

A thin shell over `analytics_sql` and `analytics_arrow`, so both adapters send the same
statements. The client is made on first use (making one contacts the server), and
without an HTTP session id so several threads may query at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import clickhouse_connect

from adapters.analytics.arrow import facts_to_arrow
from adapters.analytics.schema import SCHEMA, USAGE_TABLE
from adapters.analytics.sql import (
    COUNT_SQL,
    INSERT_SETTINGS,
    recent_from_rows,
    recent_statement,
    totals_from_rows,
    usage_statement,
)
from domain.ports.analytics import RecentRequest, UsageQuery, UsageTotals
from domain.usage import RequestMetered


class ClickHouseAnalytics:
    """AnalyticsStore on a ClickHouse server; give a DSN (`http://user:pw@host:8123/db`) or parts."""

    def __init__(self, dsn: str | None = None, *, host: str = "localhost", port: int = 8123,
                 username: str = "default", password: str = "", database: str = "default",
                 connect: Callable[..., Any] = clickhouse_connect.get_client) -> None:
        if dsn is not None:
            self._settings: dict[str, Any] = {"dsn": dsn}
        else:
            self._settings = {"host": host, "port": port, "username": username,
                              "password": password, "database": database}
        self._settings["autogenerate_session_id"] = False
        self._connect = connect
        self._client: Any = None
        self._lock = threading.Lock()

    def ensure_schema(self) -> None:
        """Creates the tables if missing (also done on first use)."""
        self._get_client()

    def insert_usage(self, facts: Sequence[RequestMetered]) -> None:
        """Inserts the facts as one Arrow table: one part on the server per batch."""
        if facts:
            self._get_client().insert_arrow(USAGE_TABLE, facts_to_arrow(facts), settings=INSERT_SETTINGS)

    def usage(self, query: UsageQuery) -> list[UsageTotals]:
        """Totals per group, ordered by group."""
        statement = usage_statement(query)
        # clickhouse-connect sends {name:Type} values as server-side parameters and escapes them
        result = self._get_client().query(statement.sql, parameters=statement.params)
        return totals_from_rows(result.result_rows)

    def recent_requests(self, user_id: str, limit: int) -> list[RecentRequest]:
        """The user's last `limit` requests, newest first; a request's parts are one entry."""
        statement = recent_statement(user_id, limit)
        result = self._get_client().query(statement.sql, parameters=statement.params)
        return recent_from_rows(result.result_rows)

    def count_usage(self) -> int:
        """How many distinct facts the store holds."""
        return int(self._get_client().query(COUNT_SQL).result_rows[0][0])

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                client = self._connect(**self._settings)
                for ddl in SCHEMA:  # idempotent: whichever process comes first creates them
                    client.command(ddl)
                self._client = client
            return self._client
