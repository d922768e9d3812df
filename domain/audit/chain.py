"""The hash chain: `entry_hash = SHA-256(prev_hash ‖ canonical(entry))`, seq gapless from 1.

`prev_hash` enters the hash as its 32 raw bytes (not its hex text); the first entry's
`prev_hash` is 32 zero bytes. Hashes are written as 64 lowercase hex digits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.audit.entry import AuditEntry

GENESIS_HASH = "0" * 64
HEX64 = re.compile(r"[0-9a-f]{64}")


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    """The hash that chains `entry` to the entry whose hash is `prev_hash`."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry.canonical()).hexdigest()


@dataclass(frozen=True)
class Head:
    """The last entry of a chain: its seq and its hash (seq 0 and the genesis hash when empty)."""

    seq: int
    hash: str


GENESIS = Head(0, GENESIS_HASH)


@dataclass(frozen=True)
class ChainedEntry:
    """An entry as stored and exported: numbered, with the hash before it and its own."""

    entry: AuditEntry
    prev_hash: str
    entry_hash: str

    @property
    def seq(self) -> int:
        return self.entry.seq

    @property
    def head(self) -> Head:
        return Head(self.entry.seq, self.entry_hash)

    def recomputed_hash(self) -> str | None:
        """The hash of this entry's content on its own `prev_hash`; None if that is not a hash."""
        if not is_hash(self.prev_hash):
            return None
        return entry_hash(self.prev_hash, self.entry)

    def as_record(self) -> dict[str, Any]:
        """One line of `entries.jsonl`: the entry's fields plus `prev_hash` and `entry_hash`."""
        return {**self.entry.as_dict(), "prev_hash": self.prev_hash, "entry_hash": self.entry_hash}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ChainedEntry:
        """The inverse of `as_record`; a malformed record raises ValueError."""
        if not isinstance(record, Mapping):
            raise ValueError("a chained entry is a JSON object")
        fields = dict(record)
        prev, own = fields.pop("prev_hash", None), fields.pop("entry_hash", None)
        if not isinstance(prev, str) or not isinstance(own, str):
            raise ValueError("a chained entry needs prev_hash and entry_hash strings")
        return cls(AuditEntry.from_dict(fields), prev, own)


def is_hash(text: Any) -> bool:
    return isinstance(text, str) and HEX64.fullmatch(text) is not None


def chain(head: Head, entries: Iterable[AuditEntry]) -> list[ChainedEntry]:
    """Numbers `entries` after `head` and links each to the one before."""
    chained: list[ChainedEntry] = []
    seq, prev = head.seq, head.hash
    for entry in entries:
        seq += 1
        numbered = entry.numbered(seq)
        own = entry_hash(prev, numbered)
        chained.append(ChainedEntry(numbered, prev, own))
        prev = own
    return chained
