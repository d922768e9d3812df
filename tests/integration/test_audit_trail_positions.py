"""Entries made from another log's events are stored with that log's position, in the same
transaction: a batch delivered again appends nothing, and a recorder resumes where it stopped."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import Tracking

from adapters.clock import FixedClock
from adapters.eventstore import memory
from adapters.eventstore.environments import memory_env
from domain.audit import AuditEntry, ChainedEntry
from domain.services.audit_trail import AuditTrail
from tests.support.audit_store import audit_store as audit_store  # fixture, used by name

CLOCK = FixedClock(datetime(2025, 3, 3, tzinfo=UTC))


def from_registry(first: int, last: int) -> list[AuditEntry]:
    return [AuditEntry(time=CLOCK.now(), actor="system", action="KeyIssued", target=f"key:{n}",
                       details={"notification_id": n}) for n in range(first, last + 1)]


def test_a_batch_delivered_again_appends_nothing_and_the_position_survives_a_reopen(audit_store) -> None:
    env, _ = audit_store
    trail = AuditTrail(CLOCK, env=dict(env))
    assert trail.position("registry") == 0
    assert len(trail.append(from_registry(1, 3), Tracking("registry", 3))) == 3
    assert trail.append(from_registry(1, 3), Tracking("registry", 3)) == []
    trail.append(from_registry(4, 5), Tracking("registry", 5))
    trail.append(from_registry(1, 1), Tracking("ledger", 1))
    trail.close()
    reopened = AuditTrail(CLOCK, env=dict(env))
    assert (reopened.position("registry"), reopened.position("ledger")) == (5, 1)
    assert reopened.head().seq == 6
    reopened.close()


def test_two_recorders_racing_on_the_same_batch_record_it_once(audit_store) -> None:
    env, _ = audit_store
    trails = [AuditTrail(CLOCK, env=dict(env)) for _ in range(2)]
    go = threading.Barrier(2)
    results: list[list[ChainedEntry]] = []

    def record(trail: AuditTrail) -> None:
        go.wait()
        results.append(trail.append(from_registry(1, 4), Tracking("registry", 4)))

    threads = [threading.Thread(target=record, args=(t,)) for t in trails]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(len(r) for r in results) == [0, 4]
    assert [r.seq for r in trails[0].records()] == [1, 2, 3, 4]
    for trail in trails:
        trail.close()


def test_the_trail_runs_on_the_in_memory_twin_and_a_reopen_on_its_name_finds_it() -> None:
    name = f"audit-{uuid.uuid4().hex}"
    key = Ed25519PrivateKey.generate()
    try:
        trail = AuditTrail(CLOCK, key, env=memory_env(name), checkpoint_every=2)
        trail.append(from_registry(1, 3), Tracking("registry", 3))
        trail.checkpoint(only_if_due=True)
        reopened = AuditTrail(CLOCK, env=memory_env(name))
        report = reopened.verify(key.public_key())
        assert (report.ok, report.entries, report.last_checkpoint.seq) == (True, 3, 3)
        assert reopened.position("registry") == 3
    finally:
        memory.forget(name)
