"""Shared by the AnalyticsStore contract suites: facts, the plain fold that checks them, a chDB client."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from chdb.session import Session
from clickhouse_connect.driver.binding import bind_query
from hypothesis import strategies as st

from adapters.analytics.arrow import arrow_stream_bytes
from adapters.analytics.audit_sql import AUDIT_TABLE
from adapters.analytics.schema import USAGE_TABLE
from adapters.analytics.sql import insert_sql
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
    """The deliberately simple model: first copy per event id, then sums per group (a fact
    counts the requests it says: 0 for the later parts of a request metered in parts)."""
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
                 "key": f.key_id, "user": f.user_id, "team": f.team_id or "",
                 "application": f.labels.get("app", "")}[query.group_by]
        sums = groups.setdefault(group, [0] * 5)
        for i, amount in enumerate((f.requests, f.prompt_tokens, f.completion_tokens, f.cached_tokens,
                                    f.cost)):
            sums[i] += amount
    return [UsageTotals(group, *sums) for group, sums in sorted(groups.items())]


def random_facts() -> st.SearchStrategy[RequestMetered]:
    """Facts over two DST weeks, with awkward ids and costs up to 2**50 nano-units either way."""
    moments = st.integers(0, 25 * 86_400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us))
    counts = st.integers(0, 2**40)
    return st.builds(
        fact, event_id=st.uuids().map(str), occurred_at=moments, user_id=st.sampled_from(NASTY_IDS),
        key_id=st.sampled_from(["k1", "k2", "k'3"]), team_id=st.sampled_from([None, "red", "blue"]),
        model=st.sampled_from(["m-a", "m-b"]), prompt_tokens=counts, completion_tokens=counts,
        cached_tokens=counts, cost=st.integers(-(2**50), 2**50),
        request_id=st.sampled_from(["", "r-1", "r-2"]), requests=st.integers(0, 1), final=st.booleans(),
        labels=st.sampled_from([{}, {"app": "canopy"}, {"app": "o'brien"}, {"env": "prod"}]))


class AnalyticsStoreFixtures:
    """The store fixture of the AnalyticsStore contracts; an adapter's subclass says how to open one."""

    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[AnalyticsStore]:
        with self.open_store(tmp_path) as store:
            store.ensure_schema()
            yield store


class SharedStoreFixtures(AnalyticsStoreFixtures):
    """One store per adapter class (`shared`), emptied before each test (`emptied`, also called by
    property tests before each example): opening and migrating a chDB directory costs ~0.3 s,
    emptying one ~30 ms."""

    @pytest.fixture(scope="class")
    @classmethod
    def shared(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        with cls().open_store(tmp_path_factory.mktemp(cls.__name__)) as store:
            store.ensure_schema()
            yield store

    @pytest.fixture
    def store(self, shared: Any) -> Any:
        return self.emptied(shared)

    @staticmethod
    def emptied(store: Any) -> Any:
        """The shared store as a freshly made one: nothing in it."""
        raise NotImplementedError


class ChdbBackedClient:
    """The slice of clickhouse-connect's Client the adapter uses, answered by chDB in-process.

    No ClickHouse server is installed here, so the HTTP transport itself is not exercised.
    """

    def __init__(self, directory: Path) -> None:
        self.session = Session(str(directory))
        self.lock = threading.Lock()  # a server takes concurrent inserts; one chDB connection does not

    def command(self, sql: str, parameters: dict[str, str] | None = None) -> None:
        self.query(sql, parameters)

    def insert_arrow(self, table: str, arrow_table: Any, settings: dict[str, str]) -> None:
        # the settings a server would get with the request, here in the statement's SETTINGS clause
        assert table in (USAGE_TABLE, AUDIT_TABLE)
        statement = (insert_sql(settings) if table == USAGE_TABLE
                     else _insert_into(table, arrow_table, settings))
        with self.lock, self.session._conn.send_insert(statement, "ArrowStream") as insert:
            insert.append(arrow_stream_bytes(arrow_table))
            insert.finish()

    def query(self, sql: str, parameters: dict[str, str] | None = None) -> SimpleNamespace:
        # clickhouse-connect's own binding decides what the server would receive
        bound_sql, bound = bind_query(sql, parameters)
        params = {name.removeprefix("param_"): value for name, value in bound.items()}
        with self.lock:
            output = self.session.query(bound_sql, "JSONCompact", params=params).bytes()
        return SimpleNamespace(result_rows=orjson.loads(output)["data"] if output else [])

    def close(self) -> None:
        self.session.close()


def _insert_into(table: str, arrow_table: Any, settings: dict[str, str]) -> str:
    rendered = ", ".join(f"{name} = {value if value.isdigit() else repr(value)}"
                         for name, value in settings.items())
    return f"INSERT INTO {table} ({', '.join(arrow_table.schema.names)}) SETTINGS {rendered}"


@contextmanager
def remote_over_chdb(directory: Path, rollup_timezone: str = "UTC") -> Iterator[AnalyticsStore]:
    """The gateway's view of the projector's chDB on the embedded default: a RemoteAnalytics on
    the unix socket an AnalyticsServer serves a ChdbAnalytics on."""
    from adapters.analytics.chdb import ChdbAnalytics
    from adapters.analytics.remote import RemoteAnalytics
    from adapters.analytics.remote_server import AnalyticsServer
    owner = ChdbAnalytics(directory / "chdb", rollup_timezone=rollup_timezone)
    with AnalyticsServer(owner, directory / "analytics.sock"):
        store = RemoteAnalytics(directory / "analytics.sock")
        try:
            yield store
        finally:
            store.close()
            owner.close()
