"""Anomaly detection end to end on synthetic history in chDB: the SQL scan over the hourly rollup,
the judgement, and incidents recorded in the anomalies application on SQLite. Each user of the
shared store has five weeks of working days in Paris and one thing of its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.analytics.anomaly_sql import SqlAnomalySignals
from adapters.analytics.chdb import ChdbAnalytics
from adapters.eventstore.environments import sqlite_env
from domain.anomaly.detection import Signal
from domain.services.anomalies import Anomalies
from domain.services.anomaly_scan import scan_anomalies
from tests.support.anomaly_history import (
    LAST_HOUR,
    NIGHT_HOUR,
    NIGHT_NOW,
    NOW,
    ZONE,
    requests_in,
    working_days,
)

LATER_SPIKE = datetime(2026, 2, 10, 16, tzinfo=UTC)  # Tuesday 17:00 in Paris, the day after


def history() -> list:
    facts = []
    for user in ("steady", "spiker", "owl", "flaky", "repeat"):
        facts += working_days(user, error_every=25 if user == "flaky" else 0)
    facts += requests_in("spiker", LAST_HOUR, 50)  # 75 requests, 3x the usual 25, in the last hour
    facts += requests_in("doubler", LAST_HOUR, 25) + working_days("doubler")  # 2x: not a spike
    facts += requests_in("owl", NIGHT_HOUR, 30)  # 02:00 in Paris: the owl never works at night
    facts += requests_in("flaky", LAST_HOUR, 25, errors=12)  # the hour's share: 13 of 50 failed
    facts += working_days("grower", growth=1.2)  # 20 % a week, every week
    facts += requests_in("quiet", LAST_HOUR, 3, cost=400_000_000)  # a few calls, dear ones, no history
    facts += requests_in("repeat", LAST_HOUR, 70)
    for hour in range(8, 17):  # the next day: its usual Tuesday from 09:00 in Paris, at 17:00 a spike
        facts += requests_in("repeat", LATER_SPIKE.replace(hour=hour), 90 if hour == 16 else 25)
    return facts


@pytest.fixture(scope="module")
def signals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlAnomalySignals]:
    store = ChdbAnalytics(tmp_path_factory.mktemp("anomaly") / "chdb", rollup_timezone=ZONE)
    try:
        store.insert_usage(history(), batch_id="history")
        yield SqlAnomalySignals(store)
    finally:
        store.close()


def scan(signals: SqlAnomalySignals, app: Anomalies, now: datetime) -> list[Signal]:
    return list(scan_anomalies(signals, app, now, ZONE).abnormal)


def of(found: list[Signal], user: str) -> set[tuple[str, str]]:
    return {(s.kind, s.scope) for s in found if s.user_id == user}


def test_a_spike_of_three_times_the_usual_hour_is_found_and_twice_is_not(signals, tmp_path: Path) -> None:
    found = scan(signals, Anomalies(env=sqlite_env(tmp_path)), NOW)
    assert of(found, "spiker") == {("spike", "user"), ("spike", "key")}
    spike = next(s for s in found if s.key == ("spike", "user", "spiker"))
    assert spike.figures["window"] == "hour" and spike.figures["metric"] == "cost"
    assert spike.figures["value"] == 75 * 20_000_000 and spike.figures["baseline_median"] == 25 * 20_000_000
    assert spike.figures["factor"] == 3.0 and spike.figures["weeks"] == 4
    assert of(found, "doubler") == set()


def test_a_night_burst_from_a_user_who_never_works_at_night_is_found(signals, tmp_path: Path) -> None:
    found = scan(signals, Anomalies(env=sqlite_env(tmp_path)), NIGHT_NOW)
    assert ("night", "user") in of(found, "owl")
    night = next(s for s in found if s.key == ("night", "user", "owl"))
    assert night.figures["local_hour"] == 2 and night.figures["night_share"] == 0
    assert all(s.kind != "night" for s in found if s.user_id != "owl")


def test_an_error_spike_is_found(signals, tmp_path: Path) -> None:
    found = scan(signals, Anomalies(env=sqlite_env(tmp_path)), NOW)
    assert ("error_rate", "user") in of(found, "flaky")
    rate = next(s for s in found if s.key == ("error_rate", "user", "flaky"))
    assert (rate.figures["errors"], rate.figures["finished"]) == (13, 50)
    assert rate.figures["baseline_median"] == pytest.approx(1 / 25)


def test_steady_growth_of_twenty_percent_a_week_is_not_flagged(signals, tmp_path: Path) -> None:
    for now in (NOW, NOW - timedelta(hours=3), NIGHT_NOW):
        assert of(scan(signals, Anomalies(env=sqlite_env(tmp_path)), now), "grower") == set()


def test_a_quiet_user_with_a_few_calls_is_not_flagged(signals, tmp_path: Path) -> None:
    assert of(scan(signals, Anomalies(env=sqlite_env(tmp_path)), NOW), "quiet") == set()


def test_a_user_at_its_usual_level_is_not_flagged(signals, tmp_path: Path) -> None:
    assert of(scan(signals, Anomalies(env=sqlite_env(tmp_path)), NOW), "steady") == set()


def test_an_incident_is_detected_once_resolved_when_normal_again_then_a_new_one_starts(
        signals, tmp_path: Path) -> None:
    app = Anomalies(env=sqlite_env(tmp_path))
    first = scan_anomalies(signals, app, NOW, ZONE)
    repeat = [i for i in first.recorded.detected if _user(app, i) == "repeat"]
    assert len(repeat) == 2  # the user and its key
    again = scan_anomalies(signals, app, NOW + timedelta(minutes=5), ZONE)
    assert not [i for i in again.recorded.detected if _user(app, i) == "repeat"]
    usual = scan_anomalies(signals, app, LATER_SPIKE - timedelta(minutes=50), ZONE)  # 15:00: usual again
    assert sorted(i for i in usual.recorded.resolved if _user(app, i) == "repeat") == sorted(repeat)
    later = scan_anomalies(signals, app, LATER_SPIKE + timedelta(hours=1, minutes=10), ZONE)
    new = [i for i in later.recorded.detected if _user(app, i) == "repeat"]
    assert len(new) == 2 and not set(new) & set(repeat)
    views = [v for v in app.incidents() if v.user_id == "repeat"]
    ended = views[0].resolved_figures
    assert ended["reason"] == "normal" and ended["hour_requests"] == 25
    assert [(v.scope, v.is_open) for v in views] == [("key", False), ("user", False),
                                                     ("key", True), ("user", True)]


def test_incidents_do_not_end_while_nothing_came_after_the_judged_hour(signals, tmp_path: Path) -> None:
    """A projector catching up after a restart: the hour it has not filled yet looks normal."""
    app = Anomalies(env=sqlite_env(tmp_path))
    opened = scan_anomalies(signals, app, NOW, ZONE).recorded.detected
    assert opened
    behind = scan_anomalies(signals, app, datetime(2026, 2, 12, 10, 5, tzinfo=UTC), ZONE)
    assert behind.recorded.resolved == () and len(app.open_incidents()) == len(opened)


def test_a_rescan_after_a_restart_records_nothing_twice(signals, tmp_path: Path) -> None:
    scan_anomalies(signals, Anomalies(env=sqlite_env(tmp_path)), NOW, ZONE)
    before = Anomalies(env=sqlite_env(tmp_path)).incidents()
    restarted = Anomalies(env=sqlite_env(tmp_path))
    report = scan_anomalies(signals, restarted, NOW + timedelta(minutes=1), ZONE)
    assert report.recorded.detected == () and report.recorded.resolved == ()
    assert restarted.incidents() == before
    assert report.abnormal  # still abnormal: the open incidents stand


def _user(app: Anomalies, incident_id: str) -> str | None:
    return next(v.user_id for v in app.incidents() if v.incident_id == incident_id)
