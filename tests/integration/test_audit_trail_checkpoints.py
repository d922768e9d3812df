"""When the signer (the scheduler's process, asking every few seconds) signs checkpoints: every N
entries, or M minutes after the last one; never without new entries; never on an append; and a
checkpoint that cannot be signed never loses an entry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import FixedClock
from domain.audit import AuditEntry
from domain.services.audit_trail import AuditAppendError, AuditTrail
from infra.workers.scheduler import checkpoint_if_due
from tests.support.audit_store import AuditRows
from tests.support.audit_store import audit_store as audit_store  # fixture, used by name

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@pytest.fixture
def opened(audit_store) -> Iterator[tuple[AuditTrail, FixedClock, AuditRows]]:
    env, rows = audit_store
    clock = FixedClock(datetime(2025, 3, 3, tzinfo=UTC))
    trail = AuditTrail(clock, KEY, env=dict(env), checkpoint_every=10,
                       checkpoint_interval=timedelta(minutes=5))
    yield trail, clock, rows
    trail.close()


def some(clock: FixedClock, n: int) -> list[AuditEntry]:
    return [AuditEntry(time=clock.now(), actor="system", action="PriceSet", target="model:m")] * n


def test_an_append_signs_nothing_and_the_signers_tick_signs_every_n_entries_at_the_head(opened) -> None:
    trail, clock, _ = opened
    for _ in range(4):
        trail.append(some(clock, 3))
        assert trail.checkpoints() == []  # appends never sign: only the scheduler's tick does
        trail.checkpoint(only_if_due=True)
    assert [c.seq for c in trail.checkpoints()] == [12]


def test_a_checkpoint_is_signed_m_minutes_after_the_last_when_entries_came(opened) -> None:
    trail, clock, _ = opened
    trail.append(some(clock, 2))
    assert trail.checkpoint(only_if_due=True) is None
    clock.advance(minutes=5)
    trail.append(some(clock, 1))
    assert trail.checkpoint(only_if_due=True) is not None
    assert [c.seq for c in trail.checkpoints()] == [3]
    assert trail.checkpoint() is None  # nothing new to sign


def test_a_checkpoint_that_cannot_be_signed_leaves_the_appended_entries_stored(opened) -> None:
    trail, clock, rows = opened
    trail.append(some(clock, 4))
    rows.put(2, {**rows.states()[2], "actor": "user:mallory"})
    stored = trail.append(some(clock, 6))  # due at 10, but the trail is broken at 2
    assert [r.seq for r in stored] == list(range(5, 11))
    with pytest.raises(AuditAppendError, match="seq 2"):
        checkpoint_if_due(trail)  # the scheduler's job: it keeps the reason for whoever looks
    assert trail.checkpoints() == [] and trail.head().seq == 10
    assert "seq 2" in (trail.checkpoint_error or "")
    with pytest.raises(AuditAppendError, match="seq 2"):
        trail.checkpoint()


def test_a_trail_opened_without_the_key_stores_entries_but_signs_nothing(audit_store) -> None:
    env, _ = audit_store
    clock = FixedClock(datetime(2025, 3, 3, tzinfo=UTC))
    trail = AuditTrail(clock, env=dict(env), checkpoint_every=1)
    trail.append(some(clock, 3))
    assert trail.checkpoints() == [] and trail.head().seq == 3
    with pytest.raises(AuditAppendError, match="without a signing key"):
        trail.checkpoint()
    trail.close()
