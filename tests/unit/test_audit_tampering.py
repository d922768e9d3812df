"""Property: over random trails and checkpoints, any single edit is named by `verify`.

A deliberately simple model says what each edit must be reported as (its kind and the first
seq that cannot be trusted), or that it cannot be seen (a shortened or rewritten tail that no
checkpoint covers: what checkpoints exist for).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, note, settings
from hypothesis import strategies as st

from domain.audit import (
    GENESIS,
    AuditEntry,
    BreakKind,
    ChainedEntry,
    Checkpoint,
    Unreadable,
    chain,
    entry_hash,
    sign_checkpoint,
    verify,
)

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = datetime(2025, 3, 1, tzinfo=UTC)
EDITS = ("change", "rehash", "delete", "swap", "insert", "truncate", "rewrite", "signature",
         "unreadable")


def entries(n: int) -> list[AuditEntry]:
    return [AuditEntry(time=T0 + timedelta(seconds=i), actor=f"user:u{i % 3}", action="KeyIssued",
                       target=f"key:{i}", details={"i": i, "ok": i % 2 == 0}, source_ip="10.0.0.1",
                       request_id=f"req-{i}") for i in range(n)]


def forged(seq: int, prev_hash: str) -> ChainedEntry:
    entry = AuditEntry(time=T0, actor="user:mallory", action="KeyRevoked", target="key:x", seq=seq)
    return ChainedEntry(entry, prev_hash, entry_hash(prev_hash, entry))


def rehashed(record: ChainedEntry, prev_hash: str, actor: str | None = None) -> ChainedEntry:
    entry = replace(record.entry, actor=actor) if actor else record.entry
    return ChainedEntry(entry, prev_hash, entry_hash(prev_hash, entry))


def cp_before(cps: set[int], seq: int) -> int:
    return max((c for c in cps if c < seq), default=0)


def apply(edit: str, data: st.DataObject, trail: list, cps: set[int], signed: list):
    """The edited trail and checkpoints, and what verify must say: (kind, seq) or None."""
    n = len(trail)
    k = data.draw(st.integers(1, n), label="k")
    i = k - 1
    if edit == "change":
        field = data.draw(st.sampled_from(["actor", "details", "time", "seq", "prev", "own"]))
        record = trail[i]
        if field in ("prev", "own"):
            hashes = {"prev_hash": record.prev_hash, "entry_hash": record.entry_hash}
            key = "prev_hash" if field == "prev" else "entry_hash"
            hashes[key] = ("f" if hashes[key][0] != "f" else "e") + hashes[key][1:]
            trail[i] = ChainedEntry(record.entry, **hashes)
        else:
            changes = {"actor": {"actor": "user:mallory"}, "details": {"details": {"i": -1}},
                       "time": {"time": record.entry.time + timedelta(microseconds=1)},
                       "seq": {"seq": record.seq + data.draw(st.integers(1, 5))}}[field]
            trail[i] = replace(record, entry=replace(record.entry, **changes))
        return trail, signed, (BreakKind.CHANGED, k)
    if edit == "unreadable":
        trail[i] = Unreadable("not JSON")
        return trail, signed, (BreakKind.CHANGED, k)
    if edit == "rehash":
        trail[i] = rehashed(trail[i], trail[i].prev_hash, actor="user:mallory")
        if k in cps:
            return trail, signed, (BreakKind.REWRITTEN, cp_before(cps, k) + 1)
        return trail, signed, ((BreakKind.CHANGED, k) if k < n else None)
    if edit == "delete":
        del trail[i]
        if k < n:
            return trail, signed, (BreakKind.MISSING, k)
        return trail, signed, ((BreakKind.TRUNCATED, k) if k in cps else None)
    if edit == "swap":
        if n < 2:
            return trail, signed, None
        j = data.draw(st.integers(1, n).filter(lambda x: x != k), label="j")
        a, b = sorted((k, j))
        trail[a - 1], trail[b - 1] = trail[b - 1], trail[a - 1]
        return trail, signed, (BreakKind.REORDERED, a)
    if edit == "insert":
        trail.insert(i, forged(k, trail[i].prev_hash))
        if k in cps:
            return trail, signed, (BreakKind.REWRITTEN, cp_before(cps, k) + 1)
        return trail, signed, (BreakKind.INSERTED, k)
    if edit == "truncate":
        kept = k - 1
        del trail[kept:]
        return trail, signed, ((BreakKind.TRUNCATED, kept + 1) if any(c > kept for c in cps) else None)
    if edit == "rewrite":
        prev = trail[i].prev_hash
        for at in range(i, n):
            trail[at] = rehashed(trail[at], prev, actor="user:mallory" if at == i else None)
            prev = trail[at].entry_hash
        later = [c for c in cps if c >= k]
        return trail, signed, ((BreakKind.REWRITTEN, cp_before(cps, k) + 1) if later else None)
    if not signed:
        return trail, signed, None
    victim = data.draw(st.integers(0, len(signed) - 1), label="checkpoint")
    sig = signed[victim].signature
    signed[victim] = replace(signed[victim], signature=("0" if sig[0] != "0" else "1") + sig[1:])
    return trail, signed, (BreakKind.BAD_SIGNATURE, signed[victim].seq)


@settings(max_examples=400, deadline=None)
@given(n=st.integers(1, 24), data=st.data(), edit=st.sampled_from(EDITS))
def test_verify_names_the_first_broken_entry_for_any_single_edit(n: int, data: st.DataObject,
                                                                 edit: str) -> None:
    trail = chain(GENESIS, entries(n))
    cps = data.draw(st.sets(st.integers(1, n)), label="checkpoints")
    signed = [sign_checkpoint(Checkpoint(c, trail[c - 1].entry_hash, T0), KEY) for c in sorted(cps)]
    assert verify(trail, signed, KEY.public_key()).ok

    edited, edited_cps, expected = apply(edit, data, list(trail), cps, list(signed))
    report = verify(edited, edited_cps, KEY.public_key())
    note(report.summary())
    if expected is None:
        assert report.ok
    else:
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == expected


def test_an_intact_trail_reports_its_count_and_last_checkpoint() -> None:
    trail = chain(GENESIS, entries(10))
    signed = [sign_checkpoint(Checkpoint(c, trail[c - 1].entry_hash, T0), KEY) for c in (4, 8)]
    report = verify(trail, signed, KEY.public_key())
    assert (report.ok, report.entries, report.checkpoints, report.last_checkpoint) == (
        True, 10, 2, signed[1])
    assert report.summary().startswith("ok: 10 entries verified")


def test_an_empty_trail_is_intact_and_a_checkpoint_over_it_means_truncation() -> None:
    assert verify([], [], KEY.public_key()).ok
    trail = chain(GENESIS, entries(3))
    signed = sign_checkpoint(Checkpoint(3, trail[-1].entry_hash, T0), KEY)
    problem = verify([], [signed], KEY.public_key()).problem
    assert problem is not None and (problem.kind, problem.seq) == (BreakKind.TRUNCATED, 1)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    trail = chain(GENESIS, entries(3))
    other = Ed25519PrivateKey.generate()
    signed = sign_checkpoint(Checkpoint(2, trail[1].entry_hash, T0), other)
    problem = verify(trail, [signed], KEY.public_key()).problem
    assert problem is not None and (problem.kind, problem.seq) == (BreakKind.BAD_SIGNATURE, 2)


def test_a_partial_trail_verifies_from_its_start_and_checks_the_checkpoint_there() -> None:
    trail = chain(GENESIS, entries(10))
    at_4 = sign_checkpoint(Checkpoint(4, trail[3].entry_hash, T0), KEY)
    report = verify(trail[4:], [at_4], KEY.public_key(), start=trail[3].head)
    assert (report.ok, report.entries, report.last_checkpoint) == (True, 6, at_4)
    wrong_start = verify(trail[4:], [], KEY.public_key(), start=trail[2].head)
    assert wrong_start.problem is not None and wrong_start.problem.kind is BreakKind.MISSING


def test_a_partial_trail_whose_start_contradicts_the_checkpoint_there_is_rewritten() -> None:
    trail = chain(GENESIS, entries(10))
    at_4 = sign_checkpoint(Checkpoint(4, trail[2].entry_hash, T0), KEY)  # signed another head
    problem = verify(trail[4:], [at_4], KEY.public_key(), start=trail[3].head).problem
    assert problem is not None and (problem.kind, problem.seq) == (BreakKind.REWRITTEN, 5)
