"""The AnalyticsStore contract for queries (groups, days, filters, intervals) on every adapter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.ports.analytics import AnalyticsStore, RecentRequest, UsageQuery
from domain.usage import RequestMetered
from tests.contract.test_analytics_store import (
    OpensChdb,
    OpensClickHouseOverChdb,
    OpensInMemory,
    OpensRemoteOverChdb,
)
from tests.support.analytics import (
    MONTH,
    NASTY_IDS,
    T0,
    ZONES,
    SharedStoreFixtures,
    fact,
    fold,
    random_facts,
)


class AnalyticsStoreQueryContract(SharedStoreFixtures):
    """What every AnalyticsStore adapter promises about queries: answers like a plain fold of its facts.

    One store per adapter class, emptied with delete_since(None) before each test and each
    hypothesis example (tests/support/analytics.SharedStoreFixtures).
    """

    @staticmethod
    def emptied(store: AnalyticsStore) -> AnalyticsStore:
        """The shared store with every fact deleted, as a freshly made one holds none."""
        store.delete_since(None)
        assert store.count_usage() == 0
        return store

    @pytest.mark.parametrize("group_by", ["model", "key", "user", "team", "day", "application"])
    def test_groups_are_totalled_and_ordered_by_group(self, store: AnalyticsStore, group_by: str) -> None:
        facts = [fact(model=model, key_id=key, user_id=user, team_id=team, cost=cost,
                      occurred_at=T0 + timedelta(hours=hours), labels=labels)
                 for model, key, user, team, cost, hours, labels in [
                     ("m-b", "k2", "bob", "blue", 7, 0, {"app": "canopy"}),
                     ("m-a", "k1", "alice", None, 11, 30, {}),
                     ("m-b", "k1", "alice", "red", 13, 50, {"app": "canopy", "env": "prod"}),
                     ("m-c", "k3", "carol", "red", 17, 75, {"app": "o'brien's tool"})]]
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

    @pytest.mark.parametrize("bad", [
        {"group_by": "week"}, {"timezone": "Mars/Olympus"},
        {"start": datetime(2024, 3, 1)}, {"end": datetime(2024, 4, 1)}])
    def test_a_question_it_cannot_answer_is_refused_clearly(self, store: AnalyticsStore, bad: dict) -> None:
        with pytest.raises(ValueError, match="UsageQuery"):
            store.usage(replace(MONTH, **bad))

    # one inherited test per adapter class is the contract pattern, hence differing executors
    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(data=st.data())
    def test_answers_like_a_plain_fold_of_random_facts(self, shared: AnalyticsStore,
                                                       data: st.DataObject) -> None:
        facts = data.draw(st.lists(random_facts(), max_size=40))
        copies = data.draw(st.lists(st.sampled_from(facts), max_size=10)) if facts else []
        store = self.emptied(shared)
        store.insert_usage(facts + copies)
        store.insert_usage(copies)
        assert store.count_usage() == len({f.event_id for f in facts})
        instants = [f.occurred_at for f in facts] + [T0, T0 + timedelta(days=30)]
        for group_by in [None, "day", "model", "key", "user", "team", "application"]:
            query = UsageQuery(
                start=data.draw(st.sampled_from(instants)), end=data.draw(st.sampled_from(instants)),
                user_id=data.draw(st.none() | st.sampled_from(NASTY_IDS[:4])),
                team_id=data.draw(st.none() | st.sampled_from(["red", ""])),
                model=data.draw(st.none() | st.just("m-a")),
                group_by=group_by, timezone=data.draw(st.sampled_from(ZONES)))
            assert store.usage(query) == fold(facts, query), query

    def test_recent_requests_are_the_users_own_newest_first_up_to_the_limit(
            self, store: AnalyticsStore) -> None:
        facts = [fact(user_id=user, occurred_at=T0 + timedelta(minutes=minute), cost=minute, model=model)
                 for user, minute, model in [("alice", 5, "m-a"), ("bob", 6, "m-b"), ("alice", 1, "m-b"),
                                             ("alice", 9, "m-c"), ("alice'", 10, "m-a")]]
        store.insert_usage(facts + facts[:2])  # a redelivered copy counts once
        recent = store.recent_requests("alice", 2)
        assert [(r.model, r.cost) for r in recent] == [("m-c", 9), ("m-a", 5)]
        assert recent == recent_model(facts, "alice", 2)
        assert [r.cost for r in store.recent_requests("alice", 200)] == [9, 5, 1]
        assert store.recent_requests("nobody", 5) == []
        assert store.recent_requests("' OR 1=1 --", 5) == []

    def test_the_parts_of_a_request_are_one_entry_with_summed_usage(self, store: AnalyticsStore) -> None:
        first = fact(request_id="r-1", requests=1, final=False, prompt_tokens=50, completion_tokens=10,
                     cost=7, latency_ms=100, occurred_at=T0, labels={"app": "canopy"})
        last = fact(request_id="r-1", requests=0, final=True, prompt_tokens=0, completion_tokens=30,
                    cost=11, latency_ms=900, status=200, occurred_at=T0 + timedelta(seconds=40),
                    labels={"app": "canopy"})
        between = fact(occurred_at=T0 + timedelta(seconds=20), cost=1)
        store.insert_usage([first, between, last, first])
        recent = store.recent_requests("alice", 10)
        assert recent == recent_model([first, between, last], "alice", 10)
        assert [r.request_id for r in recent] == ["r-1", between.event_id]
        merged = recent[0]
        assert (merged.prompt_tokens, merged.completion_tokens, merged.cost) == (50, 40, 18)
        assert (merged.occurred_at, merged.latency_ms) == (last.occurred_at, 900)
        assert merged.application == "canopy"

    @pytest.mark.parametrize("limit", [0, -1, 10_001])
    def test_a_limit_out_of_bounds_is_refused(self, store: AnalyticsStore, limit: int) -> None:
        with pytest.raises(ValueError, match="limit"):
            store.recent_requests("alice", limit)

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(data=st.data())
    def test_recent_requests_answer_like_a_plain_model(self, shared: AnalyticsStore,
                                                       data: st.DataObject) -> None:
        facts = data.draw(st.lists(random_facts(), max_size=30))
        store = self.emptied(shared)
        store.insert_usage(facts)
        for user in NASTY_IDS[:5] + ["\\N"]:
            limit = data.draw(st.integers(1, 12))
            assert store.recent_requests(user, limit) == recent_model(facts, user, limit), user


def recent_model(facts: list[RequestMetered], user_id: str, limit: int) -> list[RecentRequest]:
    """The plain model: first copy per event id, the user's facts by request, newest request first."""
    unique: dict[str, RequestMetered] = {}
    for f in facts:
        unique.setdefault(f.event_id, f)
    requests: dict[str, list[RequestMetered]] = {}
    for f in unique.values():
        if f.user_id == user_id:
            requests.setdefault(f.request_id or f.event_id, []).append(f)
    entries = []
    for request, parts in requests.items():
        latest = max(parts, key=lambda f: (f.occurred_at, f.event_id))
        entries.append(RecentRequest(
            request, latest.occurred_at, latest.model, latest.key_id, sum(f.prompt_tokens for f in parts),
            sum(f.completion_tokens for f in parts), sum(f.cost for f in parts), latest.latency_ms,
            latest.status, latest.labels.get("app", "")))
    return sorted(entries, key=lambda r: (r.occurred_at, r.request_id), reverse=True)[:limit]


class TestInMemoryAnalytics(OpensInMemory, AnalyticsStoreQueryContract):
    pass


class TestChdbAnalytics(OpensChdb, AnalyticsStoreQueryContract):
    pass


class TestClickHouseAnalyticsOverChdb(OpensClickHouseOverChdb, AnalyticsStoreQueryContract):
    pass


class TestRemoteAnalyticsOverChdb(OpensRemoteOverChdb, AnalyticsStoreQueryContract):
    pass
