"""The AnalyticsStore contract for dashboard figures on every adapter: `figures` answers like
`domain.usage_figures.fold_figures`, from raw facts and rollups alike, and each forced source
either answers exactly or is refused. One store per class (cleared by `delete_since(None)`)
keeps the suite fast."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.clickhouse import ClickHouseAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.analytics.planner import why_not
from domain.ports.analytics import AnalyticsStore
from domain.usage import RequestMetered
from domain.usage_figures import LATENCY_BUCKETS_MS, AnalyticsQuery, Figures, fold_figures
from tests.support.analytics import (
    NASTY_IDS,
    T0,
    ZONES,
    ChdbBackedClient,
    SharedStoreFixtures,
    fact,
    remote_over_chdb,
)

ROLLUP_ZONE = "America/New_York"  # the billing zone: its DST change is in the facts' weeks
NEW_YORK = ZoneInfo(ROLLUP_ZONE)
MARCH = AnalyticsQuery(datetime(2024, 3, 1, tzinfo=NEW_YORK), datetime(2024, 4, 1, tzinfo=NEW_YORK))
SOURCES = ("auto", "raw", "hourly", "daily")
MIDNIGHTS = [datetime(2024, 3, day, tzinfo=NEW_YORK) for day in (1, 8, 10, 11, 20, 31)]
HOURS = [T0 + timedelta(hours=h) for h in (0, 5, 49, 70, 170, 400)]


def figures_facts() -> st.SearchStrategy[RequestMetered]:
    """Facts over the DST weeks: awkward ids, requests in parts, every outcome, latencies up to huge."""
    moments = st.integers(0, 25 * 86_400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us))
    latencies = st.one_of(st.integers(0, 5_000), st.sampled_from(LATENCY_BUCKETS_MS), st.integers(0, 2**48))
    return st.builds(
        fact, event_id=st.uuids().map(str), occurred_at=moments, user_id=st.sampled_from(NASTY_IDS),
        key_id=st.sampled_from(["k1", "k2", "k'3"]), team_id=st.sampled_from([None, "red", "blue"]),
        model=st.sampled_from(["m-a", "m-b"]), prompt_tokens=st.integers(0, 2**40),
        completion_tokens=st.integers(0, 2**40), cached_tokens=st.integers(0, 2**30),
        cost=st.integers(-(2**50), 2**50), request_id=st.sampled_from(["", "r-1", "r-2"]),
        requests=st.integers(0, 1), final=st.booleans(), latency_ms=latencies,
        status=st.sampled_from([200, 204, 399, 400, 429, 500, 599]),
        labels=st.sampled_from([{}, {"app": "canopy"}, {"app": "o'brien"}, {"env": "prod"}]))


@st.composite
def queries(draw: st.DrawFn) -> AnalyticsQuery:
    bounds = st.sampled_from(MIDNIGHTS + HOURS + [T0 + timedelta(hours=3, microseconds=7)])
    start, end = sorted([draw(bounds), draw(bounds)])
    groups = draw(st.lists(st.sampled_from(["user", "key", "team", "model", "application"]),
                           unique=True, max_size=2))
    bucket = draw(st.none() | st.sampled_from(["hour", "day", "week", "month", "hour_of_day"]))
    if bucket:
        groups.insert(draw(st.integers(0, len(groups))), bucket)
    return AnalyticsQuery(
        start, end, user_id=draw(st.none() | st.sampled_from(NASTY_IDS[:4])),
        key_id=draw(st.none() | st.sampled_from(["k1", "k'3"])),
        team_id=draw(st.none() | st.sampled_from(["red", ""])), model=draw(st.none() | st.just("m-a")),
        application=draw(st.none() | st.sampled_from(["", "canopy", "o'brien"])),
        group_by=tuple(groups), timezone=draw(st.sampled_from([ROLLUP_ZONE, *ZONES])),
        latency=draw(st.booleans()),
        user_ids=draw(st.none() | st.lists(st.sampled_from(NASTY_IDS), max_size=3).map(tuple)))


class AnalyticsFiguresContract(SharedStoreFixtures):
    """What every AnalyticsStore promises about figures: the plain fold's answer, from any source."""

    @staticmethod
    def emptied(store: AnalyticsStore) -> AnalyticsStore:
        store.delete_since(None)
        return store

    def assert_every_source_answers_like_the_fold(self, store: AnalyticsStore, facts: list[RequestMetered],
                                                  query: AnalyticsQuery) -> None:
        expected = fold_figures(facts, query)
        for source in SOURCES:
            asked = replace(query, source=source)
            if source != "auto" and why_not(source, asked, ROLLUP_ZONE):
                with pytest.raises(ValueError, match="cannot answer exactly"):
                    store.figures(asked)
            else:
                assert store.figures(asked) == expected, asked

    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(data=st.data())
    def test_figures_answer_like_the_plain_fold_from_every_source_that_can(
            self, shared: AnalyticsStore, data: st.DataObject) -> None:
        self.emptied(shared)
        facts = data.draw(st.lists(figures_facts(), max_size=40, unique_by=lambda f: f.event_id))
        half = len(facts) // 2
        shared.insert_usage(facts[:half], batch_id="batch-1")
        shared.insert_usage(facts[half:], batch_id="batch-2")
        shared.insert_usage(facts[:half], batch_id="batch-1")  # redelivered: counted once everywhere
        for _ in range(4):
            self.assert_every_source_answers_like_the_fold(shared, facts, data.draw(queries()))

    def test_rollups_equal_raw_after_the_same_batch_is_redelivered(self, store: AnalyticsStore) -> None:
        facts = [fact(occurred_at=datetime(2024, 3, 31, 23, tzinfo=NEW_YORK) + timedelta(minutes=7 * i),
                      latency_ms=10 * i, status=500 if i % 5 == 0 else 200, final=i % 3 != 0,
                      user_id=f"user-{i % 4}") for i in range(30)]  # spans March and April
        for _ in range(3):
            store.insert_usage(facts, batch_id="twice")
        query = AnalyticsQuery(datetime(2024, 3, 31, tzinfo=NEW_YORK), datetime(2024, 4, 2, tzinfo=NEW_YORK),
                               group_by=("day", "user"), timezone=ROLLUP_ZONE)
        raw = store.figures(replace(query, source="raw"))
        assert raw == fold_figures(facts, query)
        assert store.figures(replace(query, source="daily")) == raw
        assert store.figures(replace(query, source="hourly")) == raw
        assert sum(f.requests for f in raw) == 30

    def test_recovering_a_batch_that_went_in_whole_counts_it_once_everywhere(
            self, store: AnalyticsStore) -> None:
        facts = [fact(occurred_at=datetime(2024, 3, 30, 21, tzinfo=NEW_YORK) + timedelta(minutes=37 * i),
                      user_id=f"user-{i % 3}", latency_ms=20 * i, final=i % 5 != 0) for i in range(40)]
        store.insert_usage(facts[:25], batch_id="before")
        store.insert_usage(facts[25:], batch_id="pending")
        store.recover_batch(facts[25:], "pending")
        store.recover_batch(facts[25:], "pending")
        query = AnalyticsQuery(datetime(2024, 3, 30, tzinfo=NEW_YORK), datetime(2024, 4, 2, tzinfo=NEW_YORK),
                               group_by=("day", "model"), timezone=ROLLUP_ZONE)
        for source in ("raw", "hourly", "daily"):
            assert store.figures(replace(query, source=source)) == fold_figures(facts, query), source

    def test_an_ungrouped_question_over_nothing_is_one_row_of_zeros(self, store: AnalyticsStore) -> None:
        for source in SOURCES:
            assert store.figures(replace(MARCH, source=source)) == [Figures(())]
            assert store.figures(replace(MARCH, source=source, group_by=("user",))) == []

    def test_hours_are_labelled_with_their_offset_across_a_dst_change(self, store: AnalyticsStore) -> None:
        paris = ZoneInfo("Europe/Paris")  # 02:00 does not exist on 2024-03-31: 01:59 CET, then 03:00 CEST
        first = datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
        facts = [fact(occurred_at=first + timedelta(hours=h)) for h in range(3)]
        store.insert_usage(facts, batch_id="dst")
        query = AnalyticsQuery(datetime(2024, 3, 31, tzinfo=paris), datetime(2024, 4, 1, tzinfo=paris),
                               group_by=("hour",), timezone="Europe/Paris")
        labels = [f.group[0] for f in store.figures(query)]
        assert labels == ["2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00",
                          "2024-03-31T04:00:00+02:00"]
        self.assert_every_source_answers_like_the_fold(store, facts, query)

    def test_a_huge_latency_falls_in_the_last_bucket(self, store: AnalyticsStore) -> None:
        facts = [fact(latency_ms=2**64 - 1), fact(latency_ms=0), fact(latency_ms=19), fact(latency_ms=20)]
        store.insert_usage(facts, batch_id="latencies")
        (figures,) = store.figures(replace(MARCH, source="daily"))
        assert figures.latency_histogram == ((0, 1), (19, 1), (20, 1), (LATENCY_BUCKETS_MS[-1], 1))
        assert figures == fold_figures(facts, MARCH)[0]

    @pytest.mark.parametrize(("source", "query", "reason"), [
        ("hourly", replace(MARCH, group_by=("day",), timezone="Asia/Kolkata"), "whole number of hours"),
        ("hourly", replace(MARCH, group_by=("hour",), timezone="Pacific/Chatham"), "whole number of hours"),
        ("hourly", replace(MARCH, start=T0 + timedelta(minutes=30)), "whole hours"),
        ("daily", replace(MARCH, group_by=("hour",)), "no hours"),
        ("daily", replace(MARCH, group_by=("day",), timezone="Europe/Paris"), "calendar days in"),
        ("daily", replace(MARCH, start=T0), "midnights"),
    ])
    def test_a_forced_rollup_that_cannot_answer_exactly_is_refused_with_the_reason(
            self, store: AnalyticsStore, source: str, query: AnalyticsQuery, reason: str) -> None:
        with pytest.raises(ValueError, match=reason):
            store.figures(replace(query, source=source))
        assert store.figures(replace(query, source="auto")) == fold_figures([], query)

    def test_deleting_since_a_midnight_forgets_later_facts_everywhere_and_a_rebuild_counts_them_again(
            self, store: AnalyticsStore) -> None:
        moment = datetime(2024, 3, 10, tzinfo=NEW_YORK)
        before = [fact(occurred_at=moment - timedelta(minutes=m), cost=m) for m in (1, 30, 61, 600)]
        after = [fact(occurred_at=moment + timedelta(minutes=m), cost=m) for m in (0, 1, 30, 61, 600)]
        store.insert_usage(before + after, batch_id="month")
        store.delete_since(moment)
        query = replace(MARCH, group_by=("day",), timezone=ROLLUP_ZONE)
        self.assert_every_source_answers_like_the_fold(store, before, query)
        store.insert_usage(after, batch_id="month")  # the rebuild may reuse the batch id it deleted
        self.assert_every_source_answers_like_the_fold(store, before + after, query)
        by_hour = replace(query, group_by=("hour",))
        self.assert_every_source_answers_like_the_fold(store, before + after, by_hour)

    @pytest.mark.parametrize("moment", [datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 10, 0, 0, 1,
                                                                                       tzinfo=NEW_YORK)])
    def test_deleting_since_a_moment_that_is_not_a_midnight_of_the_rollup_zone_is_refused(
            self, store: AnalyticsStore, moment: datetime) -> None:
        store.insert_usage([fact()], batch_id="kept")
        with pytest.raises(ValueError, match="midnight"):
            store.delete_since(moment)
        assert store.count_usage() == 1


class TestInMemoryFigures(AnalyticsFiguresContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        yield InMemoryAnalytics(rollup_timezone=ROLLUP_ZONE)


class TestChdbFigures(AnalyticsFiguresContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        store = ChdbAnalytics(directory / "chdb", rollup_timezone=ROLLUP_ZONE)
        try:
            yield store
        finally:
            store.close()


class TestClickHouseFiguresOverChdb(AnalyticsFiguresContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        store = ClickHouseAnalytics(connect=lambda **_: ChdbBackedClient(directory / "chdb"),
                                    rollup_timezone=ROLLUP_ZONE)
        try:
            yield store
        finally:
            store.close()


class TestRemoteFiguresOverChdb(AnalyticsFiguresContract):
    @contextmanager
    def open_store(self, directory: Path) -> Iterator[AnalyticsStore]:
        with remote_over_chdb(directory, ROLLUP_ZONE) as store:
            yield store
