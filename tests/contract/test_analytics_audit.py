"""The audit index contract (domain.ports.audit_index) on every analytics adapter: each seq held
once, entries back exactly as the trail has them, newest first through any filter, a position
that never claims an entry it lacks. Adapters (openers shared with test_analytics_store.py):
adapters.analytics.memory, adapters.analytics.chdb, adapters.analytics.clickhouse and
adapters.analytics.remote, the last two over chDB."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.analytics.remote import RemoteAnalytics
from domain.audit import AuditEntry
from domain.ports.audit_index import AuditFilter, AuditIndex, AuditIndexQuery
from tests.contract.test_analytics_store import (
    OpensChdb,
    OpensClickHouseOverChdb,
    OpensInMemory,
    OpensRemoteOverChdb,
)
from tests.support.analytics import SharedStoreFixtures
from tests.support.audit_entries import ACTIONS, ACTORS, T0, TARGETS, chained, random_entries

EVERYTHING = AuditIndexQuery(AuditFilter(), limit=10_000)


def entries(n: int, start: datetime = T0, step: timedelta = timedelta(hours=7)) -> list[AuditEntry]:
    return [AuditEntry(time=start + i * step, actor=ACTORS[i % len(ACTORS)], action=ACTIONS[i % len(ACTIONS)],
                       target=TARGETS[i % len(TARGETS)], details={"n": i, "why": "it's\\ \"odd\"\n\t☃"},
                       source_ip="10.0.0.1" if i % 2 else None, request_id=f"req-{i}" if i % 3 else None)
            for i in range(n)]


def model(trail: list, query: AuditIndexQuery) -> list:
    """The plain model: the trail read backwards through the filter."""
    return [c for c in reversed(trail) if (query.before is None or c.seq < query.before)
            and (query.upto is None or c.seq <= query.upto) and query.where.matches(c.entry)][:query.limit]


class AuditIndexContract(SharedStoreFixtures):
    """One index per adapter class, emptied (delete_audit) before each test and each hypothesis
    example (tests/support/analytics.SharedStoreFixtures)."""

    @staticmethod
    def emptied(store: AuditIndex) -> AuditIndex:
        """The shared index with every entry deleted, as a freshly made one holds none."""
        store.delete_audit()
        assert store.audit_position() == 0 and store.audit_entries(EVERYTHING) == []
        return store

    def test_entries_come_back_exactly_as_the_trail_chained_them(self, store: AuditIndex) -> None:
        trail = chained(entries(30))
        store.insert_audit(trail)
        found = store.audit_entries(EVERYTHING)
        assert found == list(reversed(trail))
        assert all(c.recomputed_hash() == c.entry_hash for c in found)

    def test_a_page_inserted_again_or_overlapping_holds_each_seq_once(self, store: AuditIndex) -> None:
        trail = chained(entries(25))
        store.insert_audit(trail[:10])
        store.insert_audit(trail[5:25])
        store.insert_audit(trail[:10])
        assert store.audit_entries(EVERYTHING) == list(reversed(trail))
        assert store.audit_position() == 25

    def test_pages_are_newest_first_below_before_and_up_to_upto(self, store: AuditIndex) -> None:
        trail = chained(entries(40))
        store.insert_audit(trail)
        for query in (AuditIndexQuery(AuditFilter(), before=31, limit=5),
                      AuditIndexQuery(AuditFilter(), upto=12, limit=100),
                      AuditIndexQuery(AuditFilter(), before=1, limit=10),
                      AuditIndexQuery(AuditFilter(actor="user:alice"), before=30, upto=20, limit=2)):
            assert store.audit_entries(query) == model(trail, query), query
        assert [c.seq for c in store.audit_entries(AuditIndexQuery(AuditFilter(), before=31, limit=3))] \
            == [30, 29, 28]

    def test_filters_match_exactly_and_times_are_half_open(self, store: AuditIndex) -> None:
        trail = chained(entries(60, step=timedelta(minutes=113)))
        store.insert_audit(trail)
        middle = trail[20].entry.time
        for where in (AuditFilter(actor="user:o'brien"), AuditFilter(actor="user:o"),
                      AuditFilter(actions=frozenset({"KeyIssued", "BudgetSet"})),
                      AuditFilter(targets=frozenset({"user:new\nline", "model:m'a"})),
                      AuditFilter(targets=frozenset({""})),
                      AuditFilter(start=middle), AuditFilter(end=middle),
                      AuditFilter(start=middle, end=middle + timedelta(microseconds=1)),
                      AuditFilter(actor="' OR 1=1 --"),
                      AuditFilter(actions=frozenset({"KeyRevoked"}), actor="key:mlk-ab12…", start=T0)):
            query = AuditIndexQuery(where, limit=1000)
            assert store.audit_entries(query) == model(trail, query), where

    def test_the_position_is_the_last_entry_of_the_first_unbroken_run(self, store: AuditIndex) -> None:
        assert store.audit_position() == 0
        trail = chained(entries(12))
        store.insert_audit(trail[:5])
        assert store.audit_position() == 5
        store.insert_audit(trail[7:9])  # rows inserted behind the projector's back leave a gap
        assert store.audit_position() == 5
        store.insert_audit(trail[5:7])
        assert store.audit_position() == 9

    def test_a_page_across_a_month_end_is_held_whole(self, store: AuditIndex) -> None:
        trail = chained(entries(10, start=datetime(2025, 1, 31, 20, tzinfo=UTC), step=timedelta(hours=1)))
        store.insert_audit(trail)
        assert store.audit_position() == 10
        assert len(store.audit_entries(AuditIndexQuery(AuditFilter(start=datetime(2025, 2, 1, tzinfo=UTC)),
                                                       limit=100))) == 6

    def test_deleting_forgets_every_entry_and_they_can_be_inserted_again(self, store: AuditIndex) -> None:
        trail = chained(entries(8))
        store.insert_audit(trail)
        store.delete_audit()
        assert store.audit_position() == 0 and store.audit_entries(EVERYTHING) == []
        store.insert_audit(trail)
        assert store.audit_entries(EVERYTHING) == list(reversed(trail))

    @pytest.mark.parametrize("query", [
        AuditIndexQuery(AuditFilter(start=datetime(2025, 1, 1))),
        AuditIndexQuery(AuditFilter(targets=frozenset(f"key:{i}" for i in range(101)))),
        AuditIndexQuery(AuditFilter(), limit=0), AuditIndexQuery(AuditFilter(), limit=10_001),
        AuditIndexQuery(AuditFilter(), before=-1)])
    def test_a_question_it_cannot_answer_is_refused_clearly(self, store: AuditIndex,
                                                            query: AuditIndexQuery) -> None:
        with pytest.raises(ValueError, match="Audit|audit"):
            store.audit_entries(query)

    # one inherited test per adapter class is the contract pattern, hence differing executors
    @settings(max_examples=20, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
    @given(data=st.data())
    def test_answers_like_the_trail_read_backwards_for_random_trails(self, shared: AuditIndex,
                                                                     data: st.DataObject) -> None:
        trail = chained(data.draw(random_entries()))
        store = self.emptied(shared)
        store.insert_audit(trail)
        store.insert_audit(trail[: len(trail) // 2])
        assert store.audit_position() == len(trail)
        moments = [c.entry.time for c in trail] + [T0]
        for _ in range(4):
            where = AuditFilter(
                actions=frozenset(data.draw(st.lists(st.sampled_from(ACTIONS), max_size=2))),
                actor=data.draw(st.none() | st.sampled_from(ACTORS)),
                targets=frozenset(data.draw(st.lists(st.sampled_from(TARGETS), max_size=2))),
                start=data.draw(st.none() | st.sampled_from(moments)),
                end=data.draw(st.none() | st.sampled_from(moments)))
            query = AuditIndexQuery(where, before=data.draw(st.none() | st.integers(0, 45)),
                                    upto=data.draw(st.none() | st.integers(0, 45)),
                                    limit=data.draw(st.integers(1, 50)))
            assert store.audit_entries(query) == model(trail, query), query


class TestInMemoryAuditIndex(OpensInMemory, AuditIndexContract):
    pass


class TestChdbAuditIndex(OpensChdb, AuditIndexContract):
    pass


class TestClickHouseAuditIndexOverChdb(OpensClickHouseOverChdb, AuditIndexContract):
    pass


class TestRemoteAuditIndexOverChdb(OpensRemoteOverChdb, AuditIndexContract):

    def test_a_search_read_gives_up_on_an_absent_owner_within_a_second(self, tmp_path: Path) -> None:
        store = RemoteAnalytics(tmp_path / "nobody.sock", wait_s=30)  # usage reads would wait 30 s
        began = time.monotonic()
        with pytest.raises(ConnectionError, match="projector"):
            store.audit_position()  # the search then answers from the trail itself
        assert time.monotonic() - began < 5
