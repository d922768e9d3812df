"""Tampering with the stored trail, row by row, on a real store (SQLite file, PostgreSQL):
verify names the first entry that cannot be trusted, or the checkpoint the edit contradicts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import FixedClock
from domain.audit import GENESIS, AuditEntry, BreakKind, ChainedEntry, chain, entry_hash
from domain.services.audit_trail import AuditAppendError, AuditTrail
from tests.support.audit_store import AuditRows
from tests.support.audit_store import audit_store as audit_store  # fixture, used by name

START = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ENTRIES = 25  # in batches of 5, with a checkpoint every 10: checkpoints at seq 10 and 20


def entry(i: int) -> AuditEntry:
    return AuditEntry(time=START + timedelta(seconds=i), actor=f"user:u{i % 4}", action="KeyIssued",
                      target=f"key:{i}", details={"models": "llama-3-8b", "n": i},
                      source_ip="192.0.2.7", request_id=f"req-{i}")


@pytest.fixture
def stored(audit_store: tuple[dict[str, str], AuditRows]) -> Iterator[tuple[AuditTrail, AuditRows]]:
    env, rows = audit_store
    writer = AuditTrail(FixedClock(START), env=dict(env))  # appends as the gateway does: no key
    trail = AuditTrail(FixedClock(START), KEY, env=dict(env), checkpoint_every=10)  # the scheduler's
    for first in range(0, ENTRIES, 5):
        writer.append([entry(i) for i in range(first, first + 5)])
        trail.checkpoint(only_if_due=True)  # the scheduler's tick
    assert [c.seq for c in trail.checkpoints()] == [10, 20]
    writer.close()
    yield trail, rows
    trail.close()


def broken(trail: AuditTrail, **kwargs) -> tuple[BreakKind, int]:
    report = trail.verify(KEY.public_key(), **kwargs)
    assert report.problem is not None, report.summary()
    return report.problem.kind, report.problem.seq


def test_an_untouched_trail_verifies_with_its_count_and_last_checkpoint(stored) -> None:
    trail, _ = stored
    report = trail.verify(KEY.public_key())
    assert (report.ok, report.entries, report.last_checkpoint.seq) == (True, ENTRIES, 20)


def test_one_changed_field_of_one_stored_entry_is_named(stored) -> None:
    trail, rows = stored
    state = rows.states()[7]
    rows.put(7, {**state, "actor": "user:mallory"})
    assert broken(trail) == (BreakKind.CHANGED, 7)


def test_a_stored_entry_that_is_no_longer_json_is_named_as_changed(stored) -> None:
    trail, rows = stored
    rows.put(7, b"{not json")
    assert broken(trail) == (BreakKind.CHANGED, 7)


def test_one_deleted_entry_is_named_as_missing(stored) -> None:
    trail, rows = stored
    rows.delete_from(7, upto=7)
    assert broken(trail) == (BreakKind.MISSING, 7)


def test_two_swapped_entries_are_named_as_reordered_at_the_first(stored) -> None:
    trail, rows = stored
    states = rows.states()
    rows.put(7, states[12])
    rows.put(12, states[7])
    assert broken(trail) == (BreakKind.REORDERED, 7)


def test_an_entry_inserted_with_a_correct_hash_is_named(stored) -> None:
    trail, rows = stored
    before = rows.record(6)
    forged = AuditEntry(time=START, actor="user:mallory", action="KeyRevoked", target="key:3", seq=7)
    rows.shift_from(7)
    rows.insert(7, ChainedEntry(forged, before.entry_hash, entry_hash(before.entry_hash, forged)), like=6)
    assert broken(trail) == (BreakKind.INSERTED, 7)


def test_a_tail_truncated_after_a_checkpoint_is_named(stored) -> None:
    trail, rows = stored
    rows.delete_from(16)
    assert broken(trail) == (BreakKind.TRUNCATED, 16)


def test_a_tail_truncated_with_its_checkpoints_is_caught_by_a_checkpoint_the_auditor_kept(stored) -> None:
    trail, rows = stored
    kept = trail.checkpoints()[-1]
    rows.delete_from(16)
    rows.delete_checkpoints()
    assert trail.verify(KEY.public_key()).ok  # nothing left in the store says it was longer
    assert broken(trail, extra_checkpoints=[kept]) == (BreakKind.TRUNCATED, 16)


def rewrite_all(rows: AuditRows, changed_seq: int) -> None:
    """Changes one entry and recomputes every hash from the start: a consistent forged chain."""
    states = rows.states()
    entries = [rows.record(v).entry for v in sorted(states)]
    entries[changed_seq - 1] = replace(entries[changed_seq - 1], actor="user:mallory")
    for record in chain(GENESIS, entries):
        rows.put_record(record.seq, record)


def test_a_chain_rewritten_with_fresh_hashes_contradicts_its_first_checkpoint(stored) -> None:
    trail, rows = stored
    rewrite_all(rows, changed_seq=3)
    report = trail.verify(KEY.public_key())
    assert (report.problem.kind, report.problem.seq, report.problem.checkpoint.seq) == (
        BreakKind.REWRITTEN, 1, 10)


def test_a_rewrite_after_a_checkpoint_is_pinned_between_it_and_the_next(stored) -> None:
    trail, rows = stored
    rewrite_all(rows, changed_seq=14)
    report = trail.verify(KEY.public_key())
    assert (report.problem.kind, report.problem.seq, report.problem.checkpoint.seq) == (
        BreakKind.REWRITTEN, 11, 20)


def test_a_rewrite_with_checkpoints_re_signed_by_another_key_fails_on_the_signature(stored) -> None:
    trail, rows = stored
    rewrite_all(rows, changed_seq=3)
    rows.delete_checkpoints()
    forger = AuditTrail(trail.clock, Ed25519PrivateKey.generate(), env=dict(trail.env))
    forger.checkpoint()
    forger.close()
    assert broken(trail) == (BreakKind.BAD_SIGNATURE, ENTRIES)


def test_the_trail_refuses_to_sign_a_checkpoint_over_entries_changed_since_the_last(stored) -> None:
    trail, rows = stored
    rows.put(22, {**rows.states()[22], "target": "key:other"})
    with pytest.raises(AuditAppendError, match="seq 22"):
        trail.checkpoint()
