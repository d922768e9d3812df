"""Contract: every AnalyticsStore adapter answers usage questions like a plain fold of its facts.

One suite, run on the in-memory twin, on chDB, and on the ClickHouse-server adapter
with a stand-in client that hands clickhouse-connect's bound statements to chDB (no
ClickHouse server is installed here, so the HTTP transport itself is not exercised).
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from chdb.session import Session
from clickhouse_connect.driver.binding import bind_query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.analytics.arrow import ARROW_SCHEMA, arrow_stream_bytes, facts_to_arrow
from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.clickhouse import ClickHouseAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.analytics.schema import SCHEMA, USAGE_COLUMNS, USAGE_TABLE
from adapters.analytics.sql import INSERT_SETTINGS, INSERT_SQL, escape_param, usage_statement
from domain.ports.analytics import AnalyticsStore, UsageQuery, UsageTotals
from domain.usage import RequestMetered, UsageSource

T0 = datetime(2024, 3, 8, tzinfo=UTC)  # a week spanning the US (Mar 10) and EU (Mar 31) DST changes
MONTH = UsageQuery(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
NASTY_IDS = ["alice", "o'brien", "back\\slash", "tab\tbed", "new\nline", "cr\rlf", "\\N", "ünï☃", "", "`x`"]
ZONES = ["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata", "Pacific/Chatham"]


def fact(**fields: Any) -> RequestMetered:
    """A fact with plausible defaults; `fields` override them."""
    defaults: dict[str, Any] = dict(
        event_id=str(uuid.uuid4()), occurred_at=T0, key_id="key-1", user_id="alice", team_id="red",
        model="gemma-3", endpoint="/v1/chat/completions", prompt_tokens=100, completion_tokens=20,
        cached_tokens=10, latency_ms=250, status=200, usage_source=UsageSource.UPSTREAM,
        price_version=1, cost=1_500_000, labels={"env": "test"})
    return RequestMetered(**{**defaults, **fields})


def fold(facts: list[RequestMetered], query: UsageQuery) -> list[UsageTotals]:
    """The deliberately simple model: first copy per event id, then sums per group."""
    unique: dict[str, RequestMetered] = {}
    for f in facts:
        unique.setdefault(f.event_id, f)
    zone = ZoneInfo(query.timezone)
    groups: dict[str, list[int]] = {"": [0] * 5} if query.group_by is None else {}
    for f in unique.values():
        if not (query.start <= f.occurred_at < query.end):
            continue
        wanted = {"user_id": query.user_id, "team_id": query.team_id, "key_id": query.key_id,
                  "model": query.model}
        if any(value is not None and (getattr(f, name) or "") != value for name, value in wanted.items()):
            continue
        group = {None: "", "day": f.occurred_at.astimezone(zone).date().isoformat(), "model": f.model,
                 "key": f.key_id, "user": f.user_id, "team": f.team_id or ""}[query.group_by]
        sums = groups.setdefault(group, [0] * 5)
        for i, amount in enumerate((1, f.prompt_tokens, f.completion_tokens, f.cached_tokens, f.cost)):
            sums[i] += amount
    return [UsageTotals(group, *sums) for group, sums in sorted(groups.items())]


class AnalyticsStoreContract:
    """The behaviour every AnalyticsStore adapter must have; subclasses say how to open one."""

    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[AnalyticsStore]:
        with self.open_store(tmp_path) as store:
            store.ensure_schema()
            yield store

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

    @pytest.mark.parametrize("group_by", ["model", "key", "user", "team", "day"])
    def test_groups_are_totalled_and_ordered_by_group(self, store: AnalyticsStore, group_by: str) -> None:
        facts = [fact(model=model, key_id=key, user_id=user, team_id=team, cost=cost,
                      occurred_at=T0 + timedelta(hours=hours))
                 for model, key, user, team, cost, hours in [
                     ("m-b", "k2", "bob", "blue", 7, 0), ("m-a", "k1", "alice", None, 11, 30),
                     ("m-b", "k1", "alice", "red", 13, 50), ("m-c", "k3", "carol", "red", 17, 75)]]
        store.insert_usage(facts)
        query = replace(MONTH, group_by=group_by)
        totals = store.usage(query)
        assert totals == fold(facts, query)
        assert [t.group for t in totals] == sorted({t.group for t in totals})
        assert sum(t.cost for t in totals) == 48

    def test_a_day_is_a_calendar_day_of_the_query_time_zone(self, store: AnalyticsStore) -> None:
        # 03:30 UTC on Mar 10 is still Mar 9 in New York; 23:30 UTC on Mar 9 is Mar 10 in Paris
        late = fact(occurred_at=datetime(2024, 3, 10, 3, 30, tzinfo=UTC), cost=1)
        later = fact(occurred_at=datetime(2024, 3, 9, 23, 30, tzinfo=UTC), cost=2)
        store.insert_usage([late, later])
        by_day = [(t.group, t.cost) for t in store.usage(replace(MONTH, group_by="day"))]
        assert by_day == [("2024-03-09", 2), ("2024-03-10", 1)]
        new_york = store.usage(replace(MONTH, group_by="day", timezone="America/New_York"))
        assert [(t.group, t.cost) for t in new_york] == [("2024-03-09", 3)]
        paris = store.usage(replace(MONTH, group_by="day", timezone="Europe/Paris"))
        assert [(t.group, t.cost) for t in paris] == [("2024-03-10", 3)]

    @pytest.mark.parametrize("field", ["user_id", "team_id", "key_id", "model"])
    def test_filters_keep_only_matching_facts(self, store: AnalyticsStore, field: str) -> None:
        facts = [fact(**{field: value}, cost=cost) for value, cost in
                 [("a", 1), ("b", 2), ("a", 4), ("o'brien\\\t", 8)]]
        store.insert_usage(facts)
        for value, cost in [("a", 5), ("b", 2), ("o'brien\\\t", 8), ("nobody", 0), ("' OR 1=1 --", 0)]:
            assert store.usage(replace(MONTH, **{field: value}))[0].cost == cost

    def test_a_fact_without_a_team_is_in_the_empty_team(self, store: AnalyticsStore) -> None:
        store.insert_usage([fact(team_id=None, cost=3), fact(team_id="red", cost=4)])
        assert store.usage(replace(MONTH, team_id=""))[0].cost == 3

    def test_the_interval_is_half_open_to_the_microsecond(self, store: AnalyticsStore) -> None:
        start, end = datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 3, 10, tzinfo=UTC)
        micro = timedelta(microseconds=1)
        costs = {start - micro: 1, start: 2, end - micro: 4, end: 8}
        store.insert_usage([fact(occurred_at=at, cost=cost) for at, cost in costs.items()])
        assert store.usage(UsageQuery(start, end))[0].cost == 6
        assert store.usage(UsageQuery(start + micro, end - micro))[0].cost == 0
        paris = ZoneInfo("Europe/Paris")  # the bounds' own zone does not matter, only the instant
        assert store.usage(UsageQuery(start.astimezone(paris), end.astimezone(paris)))[0].cost == 6

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

    @pytest.mark.parametrize("bad", [
        {"group_by": "week"}, {"timezone": "Mars/Olympus"},
        {"start": datetime(2024, 3, 1)}, {"end": datetime(2024, 4, 1)}])
    def test_a_question_it_cannot_answer_is_refused_clearly(self, store: AnalyticsStore, bad: dict) -> None:
        with pytest.raises(ValueError, match="UsageQuery"):
            store.usage(replace(MONTH, **bad))

    def test_a_fact_with_a_naive_time_is_refused(self, store: AnalyticsStore) -> None:
        with pytest.raises(ValueError, match="timezone-aware|naive|cannot be stored"):
            store.insert_usage([fact(occurred_at=datetime(2024, 3, 8))])

    # one inherited test per adapter class is the contract pattern, hence differing executors
    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(data=st.data())
    def test_answers_like_a_plain_fold_of_random_facts(self, data: st.DataObject) -> None:
        facts = data.draw(st.lists(random_facts(), max_size=40))
        copies = data.draw(st.lists(st.sampled_from(facts), max_size=10)) if facts else []
        with tempfile.TemporaryDirectory() as directory, self.open_store(Path(directory)) as store:
            store.ensure_schema()
            store.insert_usage(facts + copies)
            store.insert_usage(copies)
            assert store.count_usage() == len({f.event_id for f in facts})
            instants = [f.occurred_at for f in facts] + [T0, T0 + timedelta(days=30)]
            for group_by in [None, "day", "model", "key", "user", "team"]:
                query = UsageQuery(
                    start=data.draw(st.sampled_from(instants)), end=data.draw(st.sampled_from(instants)),
                    user_id=data.draw(st.none() | st.sampled_from(NASTY_IDS[:4])),
                    team_id=data.draw(st.none() | st.sampled_from(["red", ""])),
                    model=data.draw(st.none() | st.just("m-a")),
                    group_by=group_by, timezone=data.draw(st.sampled_from(ZONES)))
                assert store.usage(query) == fold(facts, query), query


def random_facts() -> st.SearchStrategy[RequestMetered]:
    """Facts over two DST weeks, with awkward ids and costs up to 2**50 nano-units either way."""
    moments = st.integers(0, 25 * 86_400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us))
    counts = st.integers(0, 2**40)
    return st.builds(
        fact, event_id=st.uuids().map(str), occurred_at=moments, user_id=st.sampled_from(NASTY_IDS),
        key_id=st.sampled_from(["k1", "k2", "k'3"]), team_id=st.sampled_from([None, "red", "blue"]),
        model=st.sampled_from(["m-a", "m-b"]), prompt_tokens=counts, completion_tokens=counts,
        cached_tokens=counts, cost=st.integers(-(2**50), 2**50))


class TestInMemoryAnalytics(AnalyticsStoreContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        yield InMemoryAnalytics()


class TestChdbAnalytics(AnalyticsStoreContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        store = ChdbAnalytics(directory / "chdb")
        try:
            yield store
        finally:
            store.close()

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


class ChdbBackedClient:
    """The slice of clickhouse-connect's Client the adapter uses, answered by chDB in-process."""

    def __init__(self, directory: Path) -> None:
        self.session = Session(str(directory))
        self.lock = threading.Lock()  # a server takes concurrent inserts; one chDB connection does not

    def command(self, sql: str) -> None:
        self.session.query(sql)

    def insert_arrow(self, table: str, arrow_table: Any, settings: dict[str, str]) -> None:
        assert (table, settings) == (USAGE_TABLE, INSERT_SETTINGS)  # INSERT_SQL carries the settings
        with self.lock, self.session._conn.send_insert(INSERT_SQL, "ArrowStream") as insert:
            insert.append(arrow_stream_bytes(arrow_table))
            insert.finish()

    def query(self, sql: str, parameters: dict[str, str] | None = None) -> SimpleNamespace:
        # clickhouse-connect's own binding decides what the server would receive
        bound_sql, bound = bind_query(sql, parameters)
        params = {name.removeprefix("param_"): value for name, value in bound.items()}
        with self.lock:
            result = self.session.query(bound_sql, "JSONCompact", params=params)
        return SimpleNamespace(result_rows=orjson.loads(result.bytes())["data"])

    def close(self) -> None:
        self.session.close()


class TestClickHouseAnalyticsOverChdb(AnalyticsStoreContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        store = ClickHouseAnalytics(connect=lambda **_: ChdbBackedClient(directory / "chdb"))
        try:
            yield store
        finally:
            store.close()


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
    assert [kind for kind, _ in client.sent] == ["command"] * len(SCHEMA) + ["insert_arrow", "query"]
    assert [sql for _, sql in client.sent[:len(SCHEMA)]] == list(SCHEMA)
    table, arrow, insert_settings = client.sent[-2][1]
    assert (table, insert_settings) == (USAGE_TABLE, INSERT_SETTINGS) and arrow.equals(facts_to_arrow(facts))
    assert client.sent[-1][1] == (statement.sql, statement.params)
    assert settings_seen == [{"host": "ch.internal", "port": 8123, "username": "default", "password": "pw",
                              "database": "default", "autogenerate_session_id": False}]


def test_the_arrow_frame_has_the_tables_columns_in_order() -> None:
    assert tuple(ARROW_SCHEMA.names) == USAGE_COLUMNS
    assert all(f"    {column} " in SCHEMA[0] for column in USAGE_COLUMNS)


def test_a_fact_that_does_not_fit_the_columns_is_refused_before_the_engine() -> None:
    with pytest.raises(ValueError, match="cannot be stored"):
        facts_to_arrow([fact(prompt_tokens=-1)])


@pytest.mark.parametrize(("raw", "escaped"), [
    ("plain", "plain"), ("o'brien", "o\\'brien"), ("a\\b", "a\\\\b"), ("tab\there", "tab\\there"),
    ("new\nline", "new\\nline"), ("\\N", "\\\\N"), ("nul\0", "nul\\0"), ("ünï☃", "ünï☃")])
def test_parameter_values_are_escaped_for_clickhouse_text_parsing(raw: str, escaped: str) -> None:
    assert escape_param(raw) == escaped
