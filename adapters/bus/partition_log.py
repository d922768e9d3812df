"""One partition of the in-process bus in memory: records from offset `base` on.

Records every consumer has read and every group has committed are trimmed, so memory
holds the unconsumed tail, not the whole history (the journal on disk keeps that).
"""

from __future__ import annotations


class PartitionLog:
    __slots__ = ("base", "records")

    def __init__(self, records: list[bytes] | None = None, base: int = 0) -> None:
        self.base = base
        self.records = records if records is not None else []

    def __len__(self) -> int:
        """The end offset: the offset the next record will have."""
        return self.base + len(self.records)

    def append(self, record: bytes) -> None:
        self.records.append(record)

    def read(self, start: int, limit: int) -> list[bytes]:
        if start < self.base:
            raise LookupError(f"offset {start} is no longer held in memory (records from {self.base} "
                              "are): every consumer group had read past it. Restart the process to "
                              "replay older records from the journal")
        index = start - self.base
        return self.records[index:index + limit]

    def trim(self, offset: int) -> int:
        """Forgets the records before `offset`; returns how many."""
        count = min(offset, len(self)) - self.base
        if count > 0:
            del self.records[:count]
            self.base += count
        return max(count, 0)
