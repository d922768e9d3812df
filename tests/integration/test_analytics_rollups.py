"""The chDB store's rollups are exactly once through their views, and its migrations are
safe: a retry after a crash between the raw part and a view's part, a reopened directory,
a migration cut short, a store reopened in another zone."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from chdb.session import Session

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.migrate import DEDUP_WINDOW
from domain.usage_figures import AnalyticsQuery, fold_figures
from tests.support.analytics import T0, fact

WEEKS = AnalyticsQuery(T0, T0 + timedelta(days=28), group_by=("day", "user"))
FACTS = [fact(occurred_at=T0 + timedelta(hours=5 * i, minutes=i), user_id=f"user-{i % 3}",
              latency_ms=40 * i, final=i % 4 != 0, status=503 if i % 7 == 0 else 200, cost=1000 + i)
         for i in range(60)]


def assert_each_source_counts_the_facts_once(store: ChdbAnalytics, facts=FACTS, query=WEEKS) -> None:
    expected = fold_figures(facts, query)
    for source in ("raw", "hourly", "daily"):
        assert store.figures(replace(query, source=source)) == expected, source


@pytest.fixture
def store(tmp_path: Path):
    store = ChdbAnalytics(tmp_path / "chdb")
    yield store
    store.close()


@pytest.mark.parametrize("views", [("usage_hourly_mv", "usage_daily_mv"), ("usage_daily_mv",)])
def test_a_retry_after_a_crash_between_the_raw_part_and_the_views_counts_each_fact_once(
        store: ChdbAnalytics, views: tuple[str, ...]) -> None:
    store.ensure_schema()
    for view in views:  # the raw part is written, the process dies before these views' parts
        store.query_rows(f"DETACH TABLE {view}", {})
    store.insert_usage(FACTS, batch_id="partition-0:1200")
    for view in views:
        store.query_rows(f"ATTACH TABLE {view}", {})
    store.insert_usage(FACTS, batch_id="partition-0:1200")  # the retry: the raw block is skipped
    assert_each_source_counts_the_facts_once(store)
    store.insert_usage(FACTS, batch_id="partition-0:1200")
    assert_each_source_counts_the_facts_once(store)


def test_the_deduplication_survives_closing_and_reopening_the_directory(tmp_path: Path) -> None:
    first = ChdbAnalytics(tmp_path)
    first.insert_usage(FACTS, batch_id="b-1")
    first.close()
    again = ChdbAnalytics(tmp_path)
    try:
        again.insert_usage(FACTS, batch_id="b-1")
        assert_each_source_counts_the_facts_once(again)
    finally:
        again.close()


def test_without_a_batch_id_only_the_raw_table_is_safe_to_repeat(store: ChdbAnalytics) -> None:
    store.insert_usage(FACTS)
    store.insert_usage(FACTS)
    assert store.figures(replace(WEEKS, source="raw")) == fold_figures(FACTS, WEEKS)
    (daily,) = store.figures(replace(WEEKS, group_by=(), source="daily"))
    assert daily.requests == 2 * len(FACTS)  # documented: give a batch id to keep rollups exact


def test_a_batch_with_one_fact_twice_counts_it_once_in_the_rollups(store: ChdbAnalytics) -> None:
    store.insert_usage(FACTS + FACTS[:5], batch_id="copies")
    assert_each_source_counts_the_facts_once(store)


def test_every_table_remembers_recent_insert_tokens(store: ChdbAnalytics) -> None:
    for table in ("usage_events", "usage_hourly", "usage_daily"):
        ((ddl,),) = store.query_rows(f"SHOW CREATE TABLE {table}", {})
        assert f"non_replicated_deduplication_window = {DEDUP_WINDOW}" in ddl, table


def test_each_migration_is_recorded_once_with_the_rollup_zone(tmp_path: Path) -> None:
    for _ in range(2):
        store = ChdbAnalytics(tmp_path, rollup_timezone="Europe/Paris")
        rows = store.query_rows("SELECT version, name, rollup_timezone FROM schema_migrations "
                                "ORDER BY version", {})
        store.close()
    assert rows == [[1, "0001_usage_events", "Europe/Paris"], [2, "0002_request_parts", "Europe/Paris"],
                    [3, "0003_rollups", "Europe/Paris"], [4, "0004_audit_entries", "Europe/Paris"]]


def test_a_store_reopened_with_another_zone_keeps_its_own_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = ChdbAnalytics(tmp_path, rollup_timezone="Europe/Paris")
    made.ensure_schema()
    made.close()
    store = ChdbAnalytics(tmp_path, rollup_timezone="America/New_York")
    try:
        with caplog.at_level(logging.WARNING):
            assert store.rollup_timezone == "Europe/Paris"
        assert "Europe/Paris, not the configured America/New_York" in caplog.text
    finally:
        store.close()


def test_a_rollups_migration_cut_short_runs_again_and_backfills_once(tmp_path: Path) -> None:
    store = ChdbAnalytics(tmp_path)
    store.insert_usage(FACTS, batch_id="before")
    store.close()
    session = Session(str(tmp_path))  # as if the process died before 0003 was recorded
    session.query("ALTER TABLE schema_migrations DELETE WHERE version = 3 SETTINGS mutations_sync = 2")
    session.close()
    store = ChdbAnalytics(tmp_path)
    try:
        assert_each_source_counts_the_facts_once(store)
        assert store.query_rows("SELECT count() FROM schema_migrations WHERE version = 3", {}) == [[1]]
    finally:
        store.close()


def test_deleting_since_a_midnight_not_on_a_utc_hour_keeps_the_hours_part_before_it(tmp_path: Path) -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # midnight there is 18:30 UTC: the hourly row is cut in two
    midnight = datetime(2024, 3, 12, tzinfo=kolkata)
    facts = [fact(occurred_at=midnight + timedelta(minutes=m), cost=m) for m in (-90, -29, -1, 0, 1, 29, 45)]
    store = ChdbAnalytics(tmp_path, rollup_timezone="Asia/Kolkata")
    try:
        store.insert_usage(facts, batch_id="k")
        store.delete_since(midnight)
        kept = [f for f in facts if f.occurred_at < midnight]
        query = AnalyticsQuery(datetime(2024, 3, 11, tzinfo=UTC), datetime(2024, 3, 13, tzinfo=UTC),
                               group_by=("hour",))
        assert store.figures(replace(query, source="hourly")) == fold_figures(kept, query)
        by_day = AnalyticsQuery(datetime(2024, 3, 11, tzinfo=kolkata), datetime(2024, 3, 13, tzinfo=kolkata),
                                group_by=("day",), timezone="Asia/Kolkata", source="daily")
        assert store.figures(by_day) == fold_figures(kept, by_day)
        store.insert_usage([f for f in facts if f not in kept], batch_id="k")
        assert store.figures(replace(query, source="hourly")) == fold_figures(facts, query)
        assert store.figures(by_day) == fold_figures(facts, by_day)
    finally:
        store.close()


def test_a_rollup_zone_that_is_not_a_zone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IANA"):
        ChdbAnalytics(tmp_path, rollup_timezone="Europe/Paris'; DROP TABLE usage_events; --")
    with pytest.raises(ValueError, match="IANA"):
        ChdbAnalytics(tmp_path, rollup_timezone="Mars/Olympus")


def test_a_batch_whose_view_part_a_crash_lost_is_made_whole_by_recovering_it(tmp_path: Path) -> None:
    """ClickHouse notes a block's token before committing its part: a process killed between the two
    leaves a table that refuses the batch as seen. Deleting the rows under a remembered token is that
    state; an insert with the same token leaves the rows missing, recover_batch puts them back once."""
    store = ChdbAnalytics(tmp_path / "analytics")
    store.ensure_schema()
    facts = [fact(occurred_at=datetime(2024, 3, 31, 22, tzinfo=UTC) + timedelta(minutes=13 * i),
                  user_id=f"user-{i % 3}", latency_ms=40 * i, final=i % 4 != 0) for i in range(30)]
    other = [fact(occurred_at=datetime(2024, 3, 31, 23, 30, tzinfo=UTC), user_id="bystander")]
    store.insert_usage(other, batch_id="other")
    store.insert_usage(facts, batch_id="cut-short")
    for table in ("usage_daily", "usage_hourly", "usage_events"):  # the parts a crash lost
        store.query_rows(f"ALTER TABLE {table} DELETE WHERE user_id != 'bystander' "  # noqa: S608
                         "SETTINGS mutations_sync = 2", {})
    store.insert_usage(facts, batch_id="cut-short")
    query = AnalyticsQuery(datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 4, 2, tzinfo=UTC),
                           group_by=("day", "user"))
    assert store.figures(replace(query, source="daily")) == fold_figures(other, query)  # still missing

    for _ in range(2):  # a crash during recovery recovers again
        store.recover_batch(facts, "cut-short")
        expected = fold_figures(facts + other, query)
        for source in ("raw", "hourly", "daily"):
            assert store.figures(replace(query, source=source)) == expected, source
    store.close()
