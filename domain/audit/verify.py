"""Verification: recompute the chain in stored order and check it against signed checkpoints.

It stops at the first problem, in seq order, and says how the trail broke:

- changed: an entry no longer hashes to its `entry_hash`, or cannot be read, or the entry
  before it was changed and re-hashed (so this one is chained to another);
- missing: the next entry carries a later seq, and the expected one is nowhere after it;
- reordered: the next entry carries a later seq, and the expected one comes later;
- inserted: an entry is chained to the one two places back (one was put between them), or
  repeats a seq;
- truncated: the trail ends before the seq of a signed checkpoint;
- checkpoint-signature-invalid: a checkpoint was not signed by the given public key;
- rewritten: every hash is consistent, but the head at a checkpoint's seq is not the one
  that checkpoint signed.

Without a checkpoint past it, a rewritten or shortened tail is undetectable: that is what
checkpoints (and an auditor keeping an earlier one) are for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.audit.chain import GENESIS, ChainedEntry, Head
from domain.audit.checkpoint import SignedCheckpoint, signature_valid
from domain.audit.entry import format_time


class BreakKind(StrEnum):
    CHANGED = "changed"
    MISSING = "missing"
    REORDERED = "reordered"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    BAD_SIGNATURE = "checkpoint-signature-invalid"
    REWRITTEN = "rewritten"


@dataclass(frozen=True)
class Break:
    """The first problem: its kind, the first seq that cannot be trusted, and why."""

    kind: BreakKind
    seq: int
    detail: str
    checkpoint: SignedCheckpoint | None = None


@dataclass(frozen=True)
class Unreadable:
    """A stored entry that could not be read as one (bad JSON, a missing or extra field)."""

    reason: str


@dataclass(frozen=True)
class VerifyReport:
    entries: int  # how many entries were verified
    head: Head
    last_checkpoint: SignedCheckpoint | None  # the last checkpoint that held
    checkpoints: int  # how many checkpoints held
    problem: Break | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return f"BROKEN at seq {self.problem.seq}: {self.problem.kind}: {self.problem.detail}"
        last = (f"last checkpoint at seq {self.last_checkpoint.seq} signed "
                f"{format_time(self.last_checkpoint.checkpoint.time)}" if self.last_checkpoint
                else "no checkpoint yet")
        return (f"ok: {self.entries} entries verified, head seq {self.head.seq} "
                f"({self.head.hash[:16]}), {self.checkpoints} checkpoints hold, {last}")

    def as_dict(self) -> dict[str, Any]:
        problem = self.problem
        return {"ok": self.ok, "entries": self.entries, "head_seq": self.head.seq,
                "head_hash": self.head.hash, "checkpoints": self.checkpoints,
                "last_checkpoint": self.last_checkpoint.as_record() if self.last_checkpoint else None,
                "problem": None if problem is None else {
                    "kind": str(problem.kind), "seq": problem.seq, "detail": problem.detail,
                    "checkpoint": problem.checkpoint.as_record() if problem.checkpoint else None}}


def verify(records: Iterable[ChainedEntry | Unreadable], checkpoints: Iterable[SignedCheckpoint],
           public_key: Ed25519PublicKey, start: Head = GENESIS) -> VerifyReport:
    """Checks `records` (in stored order, from seq `start.seq + 1`) against `checkpoints`.

    `start` is where a partial export begins: the seq and hash of the entry before it. A
    checkpoint before `start` cannot be checked and is skipped."""
    walk = _Walk(start, [c for c in checkpoints if c.seq >= start.seq], public_key)
    stream = iter(records)
    problem = walk.checkpoints_up_to(start.seq)
    if problem is None:
        for record in stream:
            problem = walk.step(record, stream)
            if problem is not None:
                break
        else:
            problem = walk.finish()
    return VerifyReport(walk.count, walk.head, walk.last_checkpoint, walk.held, problem)


class _Walk:
    def __init__(self, start: Head, checkpoints: list[SignedCheckpoint], key: Ed25519PublicKey) -> None:
        self.start = start
        self.head = start
        self.before: Head | None = None  # the head before `head`, to recognise an insertion
        self.pending = deque(sorted(checkpoints, key=lambda c: c.seq))
        self.key = key
        self.count = 0
        self.held = 0
        self.last_checkpoint: SignedCheckpoint | None = None

    def step(self, record: ChainedEntry | Unreadable, rest: Iterator[Any]) -> Break | None:
        p = self.head.seq + 1
        if isinstance(record, Unreadable):
            return Break(BreakKind.CHANGED, p, f"the entry in place of seq {p} cannot be read: "
                                               f"{record.reason}")
        if (record.prev_hash != self.head.hash and self.before is not None
                and record.prev_hash == self.before.hash):
            return Break(BreakKind.INSERTED, p - 1,
                         f"the entry after seq {p - 1} is chained to seq {p - 2}: an entry was "
                         f"put between them")
        if record.recomputed_hash() != record.entry_hash:
            claim = "" if record.seq == p else f" (it now claims seq {record.seq})"
            return Break(BreakKind.CHANGED, p, f"the entry in place of seq {p}{claim} no longer "
                                               "matches its entry_hash")
        if record.seq > p:
            later = any(isinstance(r, ChainedEntry) and r.seq == p for r in rest)
            if later:
                return Break(BreakKind.REORDERED, p, f"seq {record.seq} stands where seq {p} "
                                                     f"belongs; seq {p} comes later")
            gap = f"{p}" if record.seq == p + 1 else f"{p}..{record.seq - 1}"
            return Break(BreakKind.MISSING, p, f"seq {gap} missing: the next entry is seq {record.seq}")
        if record.seq < p:
            return Break(BreakKind.INSERTED, p, f"an entry repeating seq {record.seq} stands where "
                                                f"seq {p} belongs")
        if record.prev_hash != self.head.hash:
            if p == self.start.seq + 1:
                return Break(BreakKind.CHANGED, p, f"seq {p} is not chained to the start "
                                                   f"({self.start.hash[:16]})")
            return Break(BreakKind.CHANGED, p - 1, f"seq {p} was chained to another seq {p - 1}: "
                                                   f"seq {p - 1} was changed and re-hashed")
        self.before, self.head = self.head, record.head
        self.count += 1
        return self.checkpoints_up_to(p)

    def checkpoints_up_to(self, seq: int) -> Break | None:
        while self.pending and self.pending[0].seq <= seq:
            signed = self.pending.popleft()
            if not signature_valid(signed, self.key):
                return _bad_signature(signed)
            if signed.checkpoint.head_hash != self.head.hash and signed.seq == self.start.seq:
                return Break(BreakKind.REWRITTEN, signed.seq + 1,
                             f"the hash this trail starts from is not the head signed at seq "
                             f"{signed.seq}: what came before it was rewritten", signed)
            if signed.checkpoint.head_hash != self.head.hash:
                first = (self.last_checkpoint.seq if self.last_checkpoint else self.start.seq) + 1
                return Break(BreakKind.REWRITTEN, first,
                             f"the head at seq {signed.seq} is not the one signed at "
                             f"{format_time(signed.checkpoint.time)}: entries {first}..{signed.seq} "
                             "were rewritten", signed)
            self.last_checkpoint = signed
            self.held += 1
        return None

    def finish(self) -> Break | None:
        if not self.pending:
            return None
        signed = self.pending[0]
        if not signature_valid(signed, self.key):
            return _bad_signature(signed)
        return Break(BreakKind.TRUNCATED, self.head.seq + 1,
                     f"the trail ends at seq {self.head.seq}, but a checkpoint signed "
                     f"{format_time(signed.checkpoint.time)} covers up to seq {signed.seq}", signed)


def _bad_signature(signed: SignedCheckpoint) -> Break:
    return Break(BreakKind.BAD_SIGNATURE, signed.seq,
                 f"the checkpoint at seq {signed.seq} (key {signed.key_id}) is not signed by the "
                 "given public key", signed)
