"""The AnomalySignals contract on every adapter: the SQL over the hourly rollup (chDB, a ClickHouse
server's adapter) reads what the twin folds from the facts (adapters.analytics.anomaly_figures over
the in-memory store), to the request and nano-unit, medians to float rounding; and the twin and the
SQL alike give the hand-counted numbers. One store per class keeps chDB's start-up cost to one."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.analytics.anomaly_figures import FiguresAnomalySignals
from adapters.analytics.anomaly_sql import SqlAnomalySignals
from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.clickhouse import ClickHouseAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from domain.anomaly.readings import ScopeReading
from domain.ports.anomaly_signals import AnomalySignals, SignalQuery
from domain.usage import RequestMetered
from tests.support.analytics import ChdbBackedClient, fact

ZONE = "America/New_York"  # clocks went forward on Sunday 8 March 2026
NOW = datetime(2026, 3, 10, 14, 20, tzinfo=UTC)  # last complete hour 13:00 UTC = 09:00 EDT, a Tuesday
HOUR = datetime(2026, 3, 10, 13, tzinfo=UTC)
WEEK_AGO = datetime(2026, 3, 3, 14, tzinfo=UTC)  # 09:00 EST: the same local hour, an hour later in UTC
NIGHT_NOW = datetime(2026, 3, 10, 7, 5, tzinfo=UTC)  # last complete hour 06:00 UTC = 02:00 EDT
USERS = ["alice", "bob", "o'brien", "ünï☃"]


def history() -> list[RequestMetered]:
    """Five weeks of random facts (awkward ids, parts, every outcome) and hand-placed ones."""
    rng = random.Random(13)
    start = NOW - timedelta(weeks=5, days=1)
    span = int((NOW - start).total_seconds())
    facts = [fact(occurred_at=start + timedelta(seconds=rng.randrange(span)),
                  user_id=(user := rng.choice(USERS)), key_id=f"{user}-k{rng.randrange(2)}",
                  prompt_tokens=rng.randrange(5000),
                  completion_tokens=rng.randrange(2000), cost=rng.randrange(10**9),
                  status=rng.choice([200, 200, 200, 429, 500]), final=rng.random() < 0.9,
                  requests=1 if rng.random() < 0.95 else 0)
             for _ in range(6000)]
    # carol: 10 requests in the hour a week ago, 30 in the current hour, none in the other weeks
    facts += [fact(occurred_at=WEEK_AGO + timedelta(minutes=i), user_id="carol", key_id="carol-k", cost=100)
              for i in range(10)]
    facts += [fact(occurred_at=HOUR + timedelta(minutes=i), user_id="carol", key_id="carol-k", cost=100,
                   status=500 if i < 3 else 200) for i in range(30)]
    # dave: used two weeks ago only; nothing in the current day
    facts += [fact(occurred_at=HOUR - timedelta(weeks=2), user_id="dave", key_id="dave-k")]
    # erin: a night owl, at 02:00 EDT in the current hour of NIGHT_NOW and a night a week before
    facts += [fact(occurred_at=NIGHT_NOW - timedelta(minutes=m), user_id="erin", key_id="erin-k")
              for m in (10, 20)]
    facts += [fact(occurred_at=datetime(2026, 3, 3, 8, 30, tzinfo=UTC), user_id="erin", key_id="erin-k"),
              fact(occurred_at=datetime(2026, 3, 4, 15, 30, tzinfo=UTC), user_id="erin", key_id="erin-k")]
    return facts


FACTS = history()


def flat(readings: list[ScopeReading]) -> list[Any]:
    """Every figure of the readings in order; floats compared to rounding."""
    out: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, float):
            out.append(pytest.approx(value, rel=1e-9, abs=1e-9))
        elif isinstance(value, dict):
            for key in sorted(value):
                out.append(key)
                walk(value[key])
        elif isinstance(value, tuple):
            for item in value:
                walk(item)
        elif hasattr(value, "__dataclass_fields__"):
            walk(astuple(value))
        else:
            out.append(value)
    for reading in readings:
        walk(reading)
    return out


def by_id(readings: list[ScopeReading], scope: str, scope_id: str) -> ScopeReading:
    return next(r for r in readings if (r.scope, r.scope_id) == (scope, scope_id))


class AnomalySignalsContract:
    @contextmanager
    def open_signals(self, directory: Path) -> Iterator[AnomalySignals]:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def signals(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnomalySignals]:
        with cls().open_signals(tmp_path_factory.mktemp("anomaly")) as signals:
            yield signals

    @pytest.mark.parametrize("now", [NOW, NIGHT_NOW, NOW + timedelta(minutes=40),
                                     NOW - timedelta(days=3, hours=5),
                                     datetime(2026, 3, 8, 8, 10, tzinfo=UTC)])
    @pytest.mark.parametrize("zone", [ZONE, "UTC", "Asia/Kolkata"])
    def test_readings_are_the_plain_fold_of_the_facts(self, signals: AnomalySignals, now: datetime,
                                                      zone: str) -> None:
        memory = InMemoryAnalytics()
        memory.insert_usage(FACTS)
        query = SignalQuery(now, 4, zone, night_hours=(0, 1, 2, 3, 4, 5, 9))
        expected = FiguresAnomalySignals(memory).read(query)
        actual = signals.read(query)
        assert [(r.scope, r.scope_id) for r in actual] == [(r.scope, r.scope_id) for r in expected]
        assert flat(actual) == flat(expected)

    @pytest.mark.parametrize("now", [NOW, NIGHT_NOW])
    def test_scopes_below_the_minimum_volume_are_left_out_as_the_fold_leaves_them(
            self, signals: AnomalySignals, now: datetime) -> None:
        memory = InMemoryAnalytics()
        memory.insert_usage(FACTS)
        query = SignalQuery(now, 4, ZONE, min_hour_requests=3, min_day_requests=45)
        expected = FiguresAnomalySignals(memory).read(query)
        actual = signals.read(query)
        assert flat(actual) == flat(expected)
        everyone = signals.read(SignalQuery(now, 4, ZONE))
        assert 0 < len(actual) < len(everyone)
        assert all(max(r.hour.current.requests, r.hour.current.finished) >= 3 or r.day.current.requests >= 45
                   for r in actual)

    def test_it_tells_whether_the_store_holds_usage_after_an_hour(self, signals: AnomalySignals) -> None:
        assert signals.has_usage_since(HOUR)
        assert signals.has_usage_since(NOW.replace(minute=0))  # the facts of the hour under way
        assert not signals.has_usage_since(HOUR + timedelta(hours=2))

    def test_a_week_without_usage_counts_as_zero_in_the_baseline(self, signals: AnomalySignals) -> None:
        carol = by_id(signals.read(SignalQuery(NOW, 4, ZONE)), "user", "carol")
        assert (carol.hour.current.requests, carol.hour.current.cost) == (30, 3000)
        assert (carol.hour.current.finished, carol.hour.current.errors) == (30, 3)
        # weeks 1-4: 10, 0, 0, 0 requests: the median is 0 and so is the MAD
        assert carol.hour.of("requests").median == 0 and carol.hour.of("requests").mad == 0
        three = by_id(signals.read(SignalQuery(NOW, 1, ZONE)), "user", "carol")
        assert three.hour.of("requests").median == 10 and three.hour.of("cost").median == 1000

    def test_the_same_local_hour_is_followed_across_a_daylight_saving_change(
            self, signals: AnomalySignals) -> None:
        in_utc = by_id(signals.read(SignalQuery(NOW, 1, "UTC")), "user", "carol")
        assert in_utc.hour.of("requests").median == 0  # 13:00 UTC a week ago: nothing
        in_new_york = by_id(signals.read(SignalQuery(NOW, 1, ZONE)), "user", "carol")
        assert in_new_york.hour.of("requests").median == 10  # 09:00 EST a week ago: 14:00 UTC

    def test_only_scopes_with_usage_in_the_current_day_come_back(self, signals: AnomalySignals) -> None:
        readings = signals.read(SignalQuery(NOW, 4, ZONE))
        assert "dave" not in {r.scope_id for r in readings}
        assert [r.scope_id for r in readings if r.scope == "key" and r.user_id == "carol"] == ["carol-k"]
        assert readings == sorted(readings, key=lambda r: (r.scope, r.scope_id))

    def test_the_night_profile_is_read_only_when_the_last_hour_is_a_night_hour(
            self, signals: AnomalySignals) -> None:
        assert by_id(signals.read(SignalQuery(NOW, 4, ZONE)), "user", "carol").history_requests is None
        erin = by_id(signals.read(SignalQuery(NIGHT_NOW, 4, ZONE)), "user", "erin")
        # the trailing weeks: 03:30 EST (night) and 10:30 EDT; the current hour is not history
        assert (erin.history_requests, erin.night_requests) == (2, 1)
        assert erin.hour.current.requests == 2


class TestTwinSignals(AnomalySignalsContract):
    @contextmanager
    def open_signals(self, directory: Path) -> Iterator[AnomalySignals]:
        store = InMemoryAnalytics()
        store.insert_usage(FACTS)
        yield FiguresAnomalySignals(store)


class TestChdbSignals(AnomalySignalsContract):
    @contextmanager
    def open_signals(self, directory: Path) -> Iterator[AnomalySignals]:
        store = ChdbAnalytics(directory / "chdb", rollup_timezone=ZONE)
        try:
            store.insert_usage(FACTS[:3000], batch_id="first")  # two parts: sums over unmerged rows
            store.insert_usage(FACTS[3000:], batch_id="second")
            yield SqlAnomalySignals(store)
        finally:
            store.close()


class TestClickHouseSignalsOverChdb(AnomalySignalsContract):
    @contextmanager
    def open_signals(self, directory: Path) -> Iterator[AnomalySignals]:
        store = ClickHouseAnalytics(connect=lambda **_: ChdbBackedClient(directory / "chdb"),
                                    rollup_timezone=ZONE)
        try:
            store.insert_usage(FACTS, batch_id="all")
            yield SqlAnomalySignals(store)
        finally:
            store.close()
