"""Incidents over any sequence of scans, by two scanners sharing one store, against the plain model:
each abnormal spell of a (kind, scope, id) is one AnomalyDetected, and each end of a spell one
AnomalyResolved, whichever scanner saw it and however often a scan is repeated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, note, settings
from hypothesis import strategies as st

from adapters.eventstore import memory
from adapters.eventstore.environments import memory_env
from domain.anomaly.detection import Signal
from domain.anomaly.incident import transitions
from domain.services.anomalies import DETECTED, RESOLVED, Anomalies

KEYS = [("spike", "user", "a"), ("night", "user", "a"), ("spike", "key", "k1"), ("error_rate", "user", "b")]
START = datetime(2026, 3, 2, tzinfo=UTC)

scans = st.lists(st.tuples(st.frozensets(st.sampled_from(KEYS)), st.integers(0, 1), st.booleans()),
                 min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(scans)
def test_each_abnormal_spell_is_one_incident_whichever_scanner_sees_it(sequence) -> None:
    name = f"prop-{uuid.uuid4().hex}"
    scanners = [Anomalies(env=memory_env(name)), Anomalies(env=memory_env(name))]
    try:
        previous: frozenset = frozenset()
        rises = falls = 0
        for hour, (abnormal, who, repeated) in enumerate(sequence):
            note(f"hour {hour}: scanner {who} sees {sorted(abnormal)}{' twice' if repeated else ''}")
            rises += len(abnormal - previous)
            falls += len(previous - abnormal)
            previous = abnormal
            at = START + timedelta(hours=hour)
            signals = [Signal(kind, scope, scope_id, "a", {}) for kind, scope, scope_id in abnormal]
            for _ in range(2 if repeated else 1):
                scanner = scanners[who]
                scanner.record(transitions(scanner.open_incidents(), signals), at, at)
        log = scanners[0].notification_log
        assert len(log.select(1, 1000, topics=[DETECTED])) == rises
        assert len(log.select(1, 1000, topics=[RESOLVED])) == falls
        assert {v.key for v in scanners[1].open_incidents().values()} == set(previous)
    finally:
        memory.forget(name)
