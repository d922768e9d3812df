"""An analytics store made before a column existed, or before migrations and rollups, is
upgraded in place at open: its old rows keep their meaning (one fact, one request) and are
summed into the rollups by migration 0003's backfill."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from chdb.session import Session

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.migrate import load_migrations
from domain.ports.analytics import UsageQuery
from domain.usage import RequestMetered, UsageSource
from domain.usage_figures import AnalyticsQuery

# usage_events as the first release created it, before request_id, requests and final.
FIRST_DDL = """
CREATE TABLE IF NOT EXISTS usage_events
(
    event_id String, occurred_at DateTime64(6, 'UTC'), key_id String, user_id String,
    team_id String, model LowCardinality(String), endpoint LowCardinality(String),
    prompt_tokens UInt64, completion_tokens UInt64, cached_tokens UInt64, latency_ms UInt64,
    status UInt16, usage_source LowCardinality(String), price_version UInt64, cost Int64,
    job_id String, stream Bool, client_disconnected Bool, gateway_id LowCardinality(String),
    schema_version UInt16, labels Map(String, String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team_id, user_id, key_id, toStartOfHour(occurred_at), event_id)
"""
AT = datetime(2026, 11, 2, 10, tzinfo=UTC)
MONTH = UsageQuery(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def fact(event_id: str, **fields) -> RequestMetered:
    return RequestMetered(
        event_id=event_id, occurred_at=AT, key_id="k", user_id="u", team_id=None, model="m",
        endpoint="/v1/chat/completions", prompt_tokens=10, completion_tokens=5, cached_tokens=0,
        latency_ms=3, status=200, usage_source=UsageSource.UPSTREAM, price_version=1, cost=100,
        **fields)


def test_an_old_store_gets_the_new_columns_and_its_rows_count_one_request_each(tmp_path: Path) -> None:
    old = Session(str(tmp_path))
    old.query(FIRST_DDL)
    old.query("INSERT INTO usage_events (event_id, occurred_at, key_id, user_id, team_id, model, "
              "endpoint, prompt_tokens, completion_tokens, cached_tokens, latency_ms, status, "
              "usage_source, price_version, cost, job_id, stream, client_disconnected, gateway_id, "
              "schema_version, labels) VALUES ('old-1', '2026-11-02 09:00:00', 'k', 'u', '', 'm', "
              "'/v1/chat/completions', 7, 3, 0, 1, 200, 'upstream', 1, 40, '', false, false, 'gw', "
              "1, map())")
    old.close()
    store = ChdbAnalytics(tmp_path)
    try:
        store.insert_usage([fact("part-1", request_id="r", requests=1, final=False),
                            fact("part-2", request_id="r", requests=0, final=True)])
        (totals,) = store.usage(MONTH)
        assert (totals.requests, totals.prompt_tokens, totals.cost) == (2, 27, 240)
        assert store.count_usage() == 3
    finally:
        store.close()


def test_an_old_store_gets_its_rollups_backfilled_and_each_migration_recorded(tmp_path: Path) -> None:
    old = Session(str(tmp_path))
    old.query(FIRST_DDL)
    old.query("INSERT INTO usage_events (event_id, occurred_at, key_id, user_id, team_id, model, "
              "endpoint, prompt_tokens, completion_tokens, cached_tokens, latency_ms, status, "
              "usage_source, price_version, cost, job_id, stream, client_disconnected, gateway_id, "
              "schema_version, labels) VALUES ('old-1', '2026-11-02 09:00:00', 'k', 'u', '', 'm', "
              "'/v1/chat/completions', 7, 3, 0, 1, 200, 'upstream', 1, 40, '', false, false, 'gw', "
              "1, map('app', 'canopy')), ('old-1', '2026-11-02 09:00:00', 'k', 'u', '', 'm', "
              "'/v1/chat/completions', 7, 3, 0, 1, 200, 'upstream', 1, 40, '', false, false, 'gw', "
              "1, map('app', 'canopy'))")  # a redelivered copy, not merged away yet
    old.close()
    store = ChdbAnalytics(tmp_path, rollup_timezone="Europe/Berlin")
    try:
        store.insert_usage([fact("new-1", labels={"app": "canopy"})], batch_id="after-upgrade")
        query = AnalyticsQuery(MONTH.start, MONTH.end, group_by=("day", "application"))
        raw = store.figures(replace(query, source="raw"))
        summed = [(f.group, f.requests, f.cost, f.finished) for f in raw]
        assert summed == [(("2026-11-02", "canopy"), 2, 140, 2)]
        assert store.figures(replace(query, source="hourly")) == raw
        berlin = ZoneInfo("Europe/Berlin")
        daily = AnalyticsQuery(datetime(2026, 11, 1, tzinfo=berlin), datetime(2026, 12, 1, tzinfo=berlin),
                               group_by=("day", "application"), timezone="Europe/Berlin")
        assert store.figures(replace(daily, source="daily")) == store.figures(replace(daily, source="raw"))
        assert store.figures(replace(daily, source="daily"))[0].requests == 2
        versions = store.query_rows("SELECT version FROM schema_migrations ORDER BY version", {})
        assert versions == [[m.version] for m in load_migrations("UTC")]  # every one, in order
    finally:
        store.close()
