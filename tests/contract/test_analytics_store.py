"""The AnalyticsStore contract for inserts (each fact once, exactly) on every adapter; ClickHouse encoding."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.analytics.arrow import ARROW_SCHEMA, facts_to_arrow
from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.clickhouse import ClickHouseAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.analytics.migrate import SCHEMA_MIGRATIONS_DDL, load_migrations
from adapters.analytics.remote import RemoteAnalytics
from adapters.analytics.remote_server import AnalyticsServer
from adapters.analytics.schema import USAGE_COLUMNS, USAGE_TABLE
from adapters.analytics.sql import batch_token, escape_param, insert_settings, usage_statement
from domain.ports.analytics import AnalyticsStore, UsageTotals
from tests.support.analytics import (
    MONTH,
    T0,
    AnalyticsStoreFixtures,
    ChdbBackedClient,
    fact,
    fold,
    remote_over_chdb,
)


class AnalyticsStoreInsertContract(AnalyticsStoreFixtures):
    """What every AnalyticsStore adapter promises about inserts: each fact counted once, exactly."""

    def test_totals_are_the_sums_of_the_inserted_facts(self, store: AnalyticsStore) -> None:
        facts = [fact(occurred_at=T0 + timedelta(minutes=i), cost=1000 + i) for i in range(10)]
        store.insert_usage(facts)
        assert store.usage(MONTH) == fold(facts, MONTH)
        assert store.usage(MONTH) == [UsageTotals("", 10, 1000, 200, 100, 10_045)]
        assert store.count_usage() == 10

    def test_inserting_the_same_facts_twice_counts_them_once(self, store: AnalyticsStore) -> None:
        facts = [fact(occurred_at=T0 + timedelta(hours=i)) for i in range(5)]
        store.insert_usage(facts)
        store.insert_usage(facts)
        store.insert_usage(facts[2:])
        assert store.count_usage() == 5
        assert store.usage(MONTH)[0].requests == 5
        assert store.usage(replace(MONTH, group_by="day")) == fold(facts, replace(MONTH, group_by="day"))

    def test_one_event_id_twice_in_one_batch_counts_once(self, store: AnalyticsStore) -> None:
        twice = fact()
        store.insert_usage([twice, fact(), twice])
        assert store.count_usage() == 2
        assert store.usage(MONTH)[0].cost == 2 * 1_500_000

    def test_an_empty_batch_is_harmless(self, store: AnalyticsStore) -> None:
        store.insert_usage([])
        assert store.count_usage() == 0
        assert store.usage(MONTH) == [UsageTotals("", 0, 0, 0, 0, 0)]
        assert store.usage(replace(MONTH, group_by="user")) == []

    def test_totals_are_exact_to_the_nano_unit(self, store: AnalyticsStore) -> None:
        # 2**53 + 1 is where a float sum would start rounding
        costs = [2**53 + 1, 3, 999_999_999_999, -7]
        store.insert_usage([fact(cost=cost, prompt_tokens=2**40 + i) for i, cost in enumerate(costs)])
        totals = store.usage(MONTH)[0]
        assert totals.cost == sum(costs) and isinstance(totals.cost, int)
        assert totals.prompt_tokens == 4 * 2**40 + 6

    def test_inserts_from_several_threads_all_count_once(self, store: AnalyticsStore) -> None:
        facts = [fact(occurred_at=T0 + timedelta(seconds=i), cost=i) for i in range(400)]
        batches = [facts[i:i + 50] for i in range(0, 400, 50)] * 2  # every batch twice
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(store.insert_usage, batches))  # list(): re-raises a thread's error
        assert store.count_usage() == 400
        assert store.usage(MONTH)[0].cost == sum(range(400))

    def test_a_fact_with_a_naive_time_is_refused(self, store: AnalyticsStore) -> None:
        with pytest.raises(ValueError, match="timezone-aware|naive|cannot be stored"):
            store.insert_usage([fact(occurred_at=datetime(2024, 3, 8))])


# How each adapter's store is opened: one opener per adapter, for this suite and the query
# suite (test_analytics_store_queries.py), each subclassing it with its contract.

class OpensInMemory:
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        yield InMemoryAnalytics()


class OpensChdb:
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        store = ChdbAnalytics(directory / "chdb")
        try:
            yield store
        finally:
            store.close()


class OpensClickHouseOverChdb:
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        store = ClickHouseAnalytics(connect=lambda **_: ChdbBackedClient(directory / "chdb"))
        try:
            yield store
        finally:
            store.close()


class OpensRemoteOverChdb:
    """The gateway's view of the projector's chDB on the embedded default (a unix socket)."""

    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        with remote_over_chdb(directory) as store:
            yield store


class TestInMemoryAnalytics(OpensInMemory, AnalyticsStoreInsertContract):
    pass


class TestChdbAnalytics(OpensChdb, AnalyticsStoreInsertContract):

    def test_reopening_the_directory_keeps_the_facts(self, tmp_path: Path) -> None:
        facts = [fact(occurred_at=T0 + timedelta(days=i % 20), cost=i) for i in range(100)]
        with self.open_store(tmp_path) as store:
            store.ensure_schema()
            store.insert_usage(facts)
        with self.open_store(tmp_path) as store:
            store.ensure_schema()
            store.insert_usage(facts[:50])  # a redelivery after the restart
            assert store.count_usage() == 100
            assert store.usage(replace(MONTH, group_by="day")) == fold(facts, replace(MONTH, group_by="day"))

    def test_a_second_directory_in_the_same_process_is_refused_with_the_reason(
            self, store: AnalyticsStore, tmp_path: Path) -> None:
        with self.open_store(tmp_path / "other") as other, pytest.raises(RuntimeError, match="one embedded"):
            other.count_usage()


class TestClickHouseAnalyticsOverChdb(OpensClickHouseOverChdb, AnalyticsStoreInsertContract):
    pass


class TestRemoteAnalyticsOverChdb(OpensRemoteOverChdb, AnalyticsStoreInsertContract):

    def test_a_call_waits_for_the_owner_to_come_back(self, tmp_path: Path) -> None:
        owner = InMemoryAnalytics()
        server = AnalyticsServer(owner, tmp_path / "a.sock").start()
        store = RemoteAnalytics(tmp_path / "a.sock", wait_s=10)
        store.insert_usage([fact()])
        server.stop()  # the projector restarts: the next call retries until it answers
        restart = threading.Timer(0.5, lambda: AnalyticsServer(owner, tmp_path / "a.sock").start())
        restart.start()
        try:
            assert store.count_usage() == 1
        finally:
            restart.join()
            store.close()

    def test_an_absent_owner_is_named_after_the_wait(self, tmp_path: Path) -> None:
        store = RemoteAnalytics(tmp_path / "nobody.sock", wait_s=0.3)
        with pytest.raises(ConnectionError, match="projector"):
            store.count_usage()


class RecordingClient:
    """Remembers what the adapter sends; answers queries with one row of zeros."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def command(self, sql: str) -> None:
        self.sent.append(("command", sql))

    def insert_arrow(self, table: str, arrow_table: Any, settings: dict[str, str]) -> None:
        self.sent.append(("insert_arrow", (table, arrow_table, settings)))

    def query(self, sql: str, parameters: dict[str, str] | None = None) -> SimpleNamespace:
        self.sent.append(("query", (sql, parameters)))
        if "schema_migrations" in sql:
            return SimpleNamespace(result_rows=[])  # a new store
        if "insert_generations" in sql:
            return SimpleNamespace(result_rows=[[0]])
        return SimpleNamespace(result_rows=[["", 0, 0, 0, 0, 0]])

    def close(self) -> None:
        pass


def test_the_clickhouse_adapter_sends_the_shared_statements_and_connects_lazily() -> None:
    client, settings_seen = RecordingClient(), []
    store = ClickHouseAnalytics(host="ch.internal", password="pw",
                                connect=lambda **kw: settings_seen.append(kw) or client)
    assert settings_seen == []  # making a clickhouse-connect client contacts the server
    facts = [fact(), fact(team_id=None, job_id="j-1")]
    query = replace(MONTH, user_id="o'brien", group_by="day", timezone="Asia/Kolkata")
    store.ensure_schema()
    store.insert_usage(facts)
    store.usage(query)
    statement = usage_statement(query)
    migrations = load_migrations("UTC")
    statements = [s for m in migrations for s in m.statements]
    opening = 2 + len(statements) + len(migrations)  # the table, what is applied, each migration
    assert [kind for kind, _ in client.sent] == (["command", "query"] + ["command"] * (opening - 2)
                                                 + ["insert_arrow", "query"])
    assert client.sent[0][1] == SCHEMA_MIGRATIONS_DDL
    applied = [sql for _, sql in client.sent[2:opening] if not sql.startswith("INSERT INTO schema_")]
    assert applied == statements
    table, arrow, settings = client.sent[-2][1]
    assert (table, settings) == (USAGE_TABLE, insert_settings(None)) and arrow.equals(facts_to_arrow(facts))
    assert client.sent[-1][1] == (statement.sql, statement.params)
    assert settings_seen == [{"host": "ch.internal", "port": 8123, "username": "default", "password": "pw",
                              "database": "default", "autogenerate_session_id": False}]


def test_the_clickhouse_adapter_sends_a_batch_id_as_the_inserts_deduplication_token() -> None:
    client = RecordingClient()
    store = ClickHouseAnalytics(connect=lambda **_: client)
    store.insert_usage([fact(), fact()], batch_id="usage:3:1200")
    (settings,) = [sent[2] for kind, sent in client.sent if kind == "insert_arrow"]
    assert settings == insert_settings(batch_token("usage:3:1200", 0))
    assert settings["deduplicate_blocks_in_dependent_materialized_views"] == "1"
    assert batch_token("usage:3:1200", 1) != batch_token("usage:3:1200", 0)  # after delete_since


def test_the_arrow_frame_has_the_tables_columns_in_order() -> None:
    (usage_events_ddl,) = load_migrations("UTC")[0].statements
    assert tuple(ARROW_SCHEMA.names) == USAGE_COLUMNS
    assert all(f"    {column} " in usage_events_ddl for column in USAGE_COLUMNS)


def test_a_fact_that_does_not_fit_the_columns_is_refused_before_the_engine() -> None:
    with pytest.raises(ValueError, match="cannot be stored"):
        facts_to_arrow([fact(prompt_tokens=-1)])


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain", "plain"), ("o'brien", "o\\'brien"), ("a\\b", "a\\\\b"), ("tab\there", "tab\\there"),
    ("new\nline", "new\\nline"), ("\\N", "\\\\N"), ("nul\0", "nul\\0"), ("ünï☃", "ünï☃")])
def test_parameter_values_are_escaped_for_clickhouse_text_parsing(raw: str, escaped: str) -> None:
    assert escape_param(raw) == escaped
