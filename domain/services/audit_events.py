"""What the audit trail stores: one event per entry, one per signed checkpoint.

The topics (`meterline.AuditEntryRecorded`, `meterline.AuditCheckpointSigned`) and the stream
ids are written into stores: keep them, whatever the classes and modules are called.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import DomainEvent

from domain.audit import ChainedEntry

ENTRIES_ID = uuid5(NAMESPACE_URL, "meterline:audit:entries")
CHECKPOINTS_ID = uuid5(NAMESPACE_URL, "meterline:audit:checkpoints")


class AuditEntryRecorded(DomainEvent):
    """One chained entry; its fields are `ChainedEntry.as_record()` (seq repeats the version)."""

    TOPIC = "meterline.AuditEntryRecorded"
    seq: int
    time: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    source_ip: str | None
    request_id: str | None
    prev_hash: str
    entry_hash: str


class AuditCheckpointSigned(DomainEvent):
    """One signed checkpoint; its fields are `SignedCheckpoint.as_record()`."""

    TOPIC = "meterline.AuditCheckpointSigned"
    seq: int
    head_hash: str
    time: str
    key_id: str
    signature: str


def entry_event(chained: ChainedEntry, at: datetime) -> AuditEntryRecorded:
    """The stored form of a chained entry: its stream version is its seq."""
    return AuditEntryRecorded(originator_id=ENTRIES_ID, originator_version=chained.seq, timestamp=at,
                              **chained.as_record())
