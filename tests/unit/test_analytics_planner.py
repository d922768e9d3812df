"""The analytics planner picks the smallest source that answers a question exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters.analytics.migrate import load_migrations, split_statements
from adapters.analytics.planner import plan
from domain.usage_figures import AnalyticsQuery

PARIS = ZoneInfo("Europe/Paris")
MONTH_IN_PARIS = AnalyticsQuery(datetime(2024, 3, 1, tzinfo=PARIS), datetime(2024, 4, 1, tzinfo=PARIS),
                                timezone="Europe/Paris")
UTC_DAYS = AnalyticsQuery(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 8, tzinfo=UTC))


@pytest.mark.parametrize(("query", "source"), [
    (MONTH_IN_PARIS, "daily"),
    (AnalyticsQuery(MONTH_IN_PARIS.start, MONTH_IN_PARIS.end, group_by=("week", "user"),
                    timezone="Europe/Paris"), "daily"),
    (AnalyticsQuery(MONTH_IN_PARIS.start, MONTH_IN_PARIS.end, group_by=("hour",), timezone="Europe/Paris"),
     "hourly"),
    (AnalyticsQuery(UTC_DAYS.start, UTC_DAYS.end, group_by=("day",)), "hourly"),  # not Paris days
    (AnalyticsQuery(UTC_DAYS.start, UTC_DAYS.end, group_by=("day",), timezone="Asia/Kolkata"), "raw"),
    (AnalyticsQuery(UTC_DAYS.start, UTC_DAYS.end, group_by=("hour_of_day",), timezone="Pacific/Chatham"),
     "raw"),
    (AnalyticsQuery(UTC_DAYS.start, UTC_DAYS.end, timezone="Asia/Kolkata"), "hourly"),  # no bucket: no zone
    (AnalyticsQuery(UTC_DAYS.start + timedelta(minutes=1), UTC_DAYS.end), "raw"),
    (AnalyticsQuery(MONTH_IN_PARIS.start, MONTH_IN_PARIS.end, group_by=("month",), timezone="Europe/Paris",
                    source="raw"), "raw"),
])
def test_auto_takes_the_smallest_source_that_answers_exactly(query: AnalyticsQuery, source: str) -> None:
    assert plan(query, "Europe/Paris") == source


def test_a_zone_with_a_half_hour_offset_only_part_of_the_interval_keeps_the_hourly_rollup_out() -> None:
    # Lord Howe is +10:30 in its winter and +11 in summer (from the first Sunday of October)
    zone = "Australia/Lord_Howe"
    summer = AnalyticsQuery(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC),
                            group_by=("day",), timezone=zone)
    assert plan(summer, "UTC") == "hourly"
    across = AnalyticsQuery(datetime(2024, 3, 30, tzinfo=UTC), datetime(2024, 4, 20, tzinfo=UTC),
                            group_by=("day",), timezone=zone)
    assert plan(across, "UTC") == "raw"


def test_a_forced_source_that_cannot_answer_exactly_says_why() -> None:
    with pytest.raises(ValueError, match="'daily' cannot answer exactly: .*midnights in Europe/Paris"):
        plan(AnalyticsQuery(UTC_DAYS.start, UTC_DAYS.end, source="daily"), "Europe/Paris")


def test_statements_split_at_line_ending_semicolons_without_comments() -> None:
    text = "-- a comment; not a statement\nCREATE TABLE a (x String DEFAULT ';');\n\nSELECT 1;\n"
    assert split_statements(text) == ("CREATE TABLE a (x String DEFAULT ';')", "SELECT 1")


def test_the_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in load_migrations("UTC")]
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 4



def test_figures_without_latency_are_the_same_figures_with_an_empty_histogram():
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from domain.usage_figures import AnalyticsQuery, fold_figures
    from tests.support.analytics import fact

    start = datetime(2024, 3, 1, tzinfo=UTC)
    facts = [fact(occurred_at=start + timedelta(hours=i), latency_ms=i * 37, user_id=f"u{i % 3}")
             for i in range(50)]
    query = AnalyticsQuery(start, start + timedelta(days=31), group_by=("user",))
    with_latency = fold_figures(facts, query)
    assert all(f.latency_histogram for f in with_latency)
    assert fold_figures(facts, replace(query, latency=False)) == [
        replace(f, latency_histogram=()) for f in with_latency]


def test_a_question_about_more_than_a_page_of_named_users_is_refused():
    from datetime import UTC, datetime

    import pytest

    from domain.usage_figures import MAX_USER_IDS, AnalyticsQuery, check_analytics_query

    start = datetime(2024, 3, 1, tzinfo=UTC)
    check_analytics_query(AnalyticsQuery(start, start, user_ids=("a",) * MAX_USER_IDS))
    for bad in (("a",) * (MAX_USER_IDS + 1), ["a"], ("a", 7)):
        with pytest.raises(ValueError, match="user_ids"):
            check_analytics_query(AnalyticsQuery(start, start, user_ids=bad))


def test_a_zone_name_that_is_a_directory_of_the_zone_database_is_refused_as_a_bad_zone():
    """Loading 'America' reads a directory (IsADirectoryError), a 300-character name fails in the
    file system: both are bad zones, not crashes, wherever a zone name is checked."""
    from datetime import UTC, datetime

    import pytest

    from adapters.analytics.migrate import check_zone
    from domain.periods import is_time_zone
    from domain.usage_figures import AnalyticsQuery, check_analytics_query
    from infra.config.errors import check_timezone

    start = datetime(2024, 3, 1, tzinfo=UTC)
    for name in ("America", "a" * 300):
        assert not is_time_zone(name)
        with pytest.raises(ValueError, match="IANA time zone"):
            check_analytics_query(AnalyticsQuery(start, start, timezone=name))
        with pytest.raises(ValueError, match="IANA time zone"):
            check_zone(name)
        with pytest.raises(ValueError, match="unknown time zone"):
            check_timezone(name)
    assert is_time_zone("Europe/Paris") and is_time_zone("UTC")
