"""The anomalies application on every event store (in-memory, SQLite, PostgreSQL): incidents
recorded once, read back by another process's copy, the AnomalyDetected contract the alerts
worker reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.eventstore.environments import sqlite_env
from domain.anomaly.detection import Signal
from domain.anomaly.incident import transitions
from domain.services.anomalies import DETECTED, RESOLVED, Anomalies, IncidentFilter

HOUR = datetime(2026, 3, 2, 10, tzinfo=UTC)
SPIKE = Signal("spike", "user", "alice", "alice", {"window": "hour", "value": 9_000_000_000,
                                                   "baseline_median": 1e9, "baseline_mad": 0.0,
                                                   "factor": 3.0})
NIGHT = Signal("night", "key", "alice-laptop", "alice", {"window": "hour", "local_hour": 3})


def test_anomaly_detected_carries_exactly_the_attributes_the_alerts_worker_reads(store_env: dict) -> None:
    app = Anomalies(env=store_env)
    app.record(transitions([], [SPIKE]), HOUR, HOUR + timedelta(minutes=5))
    (notification,) = app.notification_log.select(1, 10, topics=[DETECTED])
    detected = app.mapper.to_domain_event(notification)
    attributes = {name for name in vars(detected) if name not in
                  ("originator_id", "originator_version", "timestamp", "originator_topic")}
    assert attributes == {"incident_id", "kind", "scope", "scope_id", "user_id", "figures", "at"}
    assert (detected.kind, detected.scope, detected.scope_id) == ("spike", "user", "alice")
    assert detected.user_id == "alice"
    assert detected.figures == SPIKE.figures
    assert detected.at == HOUR + timedelta(minutes=5)
    assert str(detected.originator_id) == detected.incident_id


def test_two_scanners_finding_the_same_start_record_one_incident(store_env: dict) -> None:
    first, second = Anomalies(env=store_env), Anomalies(env=store_env)
    second.incidents()  # its index is read before the first records: it does not know of the incident
    changes = transitions([], [SPIKE])
    assert len(first.record(changes, HOUR, HOUR).detected) == 1
    late = second.record(changes, HOUR, HOUR + timedelta(minutes=1))
    assert late.detected == ()
    assert len(Anomalies(env=store_env).incidents()) == 1


def test_a_scanner_whose_view_is_stale_loses_the_race_and_records_nothing(
        store_env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = Anomalies(env=store_env), Anomalies(env=store_env)
    monkeypatch.setattr(second, "incidents", lambda: [])  # it read the log before the first saved
    first.record(transitions([], [SPIKE, NIGHT]), HOUR, HOUR)
    late = second.record(transitions([], [SPIKE, NIGHT]), HOUR, HOUR + timedelta(minutes=1))
    assert (late.detected, late.conflicts) == ((), 2)
    assert len(Anomalies(env=store_env).incidents()) == 2


def test_a_resolution_is_recorded_once_and_read_by_another_copy(store_env: dict) -> None:
    app = Anomalies(env=store_env)
    app.record(transitions([], [SPIKE]), HOUR, HOUR)
    ended = transitions(app.open_incidents(), [])
    assert len(app.record(ended, HOUR + timedelta(hours=1), HOUR + timedelta(hours=1)).resolved) == 1
    assert app.record(ended, HOUR + timedelta(hours=1), HOUR + timedelta(hours=1)).resolved == ()
    reader = Anomalies(env=store_env)
    (view,) = reader.incidents()
    assert not view.is_open and view.resolved_at == HOUR + timedelta(hours=1)
    assert len(reader.notification_log.select(1, 10, topics=[RESOLVED])) == 1


def test_pages_are_newest_first_and_filtered(tmp_path: Path) -> None:
    app = Anomalies(env=sqlite_env(tmp_path))
    for i, user in enumerate(["a", "b", "c"]):
        signal = Signal("night" if user == "b" else "spike", "user", user, user, {})
        app.record(transitions([], [signal]), HOUR + timedelta(hours=i), HOUR + timedelta(hours=i))
    page, before = app.page(IncidentFilter(), None, 2)
    assert [v.scope_id for v in page] == ["c", "b"] and before is not None
    rest, end = app.page(IncidentFilter(), before, 2)
    assert [v.scope_id for v in rest] == ["a"] and end is None
    assert [v.scope_id for v in app.page(IncidentFilter(kind="spike"), None, 10)[0]] == ["c", "a"]
    assert app.page(IncidentFilter(state="resolved"), None, 10)[0] == []
    window = IncidentFilter(start=HOUR + timedelta(hours=1), end=HOUR + timedelta(hours=2))
    assert [v.scope_id for v in app.page(window, None, 10)[0]] == ["b"]
