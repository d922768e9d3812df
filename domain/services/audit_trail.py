"""The audit trail application: the hash-chained entries and their signed checkpoints.

The entries are one event stream whose version is the entry's seq, so the store's unique
(originator id, version) keeps seq gapless under several writers: a writer that chained
on a stale head collides on its first seq, re-reads the head and chains again. The stream
is never folded into an aggregate (it grows without end); its head is its last event.
Checkpoints are a second stream, numbered 1, 2, …; the signing key is passed in and never
stored. Appending never signs: only a trail opened with the signing key (the scheduler's
process) signs checkpoints, when its `checkpoint(only_if_due=True)` is called; every other
process holds the public key alone. The trail has its own store (SQLite file, PostgreSQL
tables) and notification log.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.utils import register_topic

from domain.audit import (
    GENESIS,
    AuditEntry,
    ChainedEntry,
    Checkpoint,
    Head,
    SignedCheckpoint,
    Unreadable,
    VerifyReport,
    chain,
    sign_checkpoint,
    verify,
)
from domain.errors import DomainError
from domain.ports.clock import Clock
from domain.services.audit_events import (
    CHECKPOINTS_ID,
    ENTRIES_ID,
    AuditCheckpointSigned,
    AuditEntryRecorded,
    entry_event,
)

CHECKPOINT_EVERY = 1000  # entries
CHECKPOINT_INTERVAL = timedelta(minutes=5)
MAX_ATTEMPTS = 50  # each collision means another writer appended: someone always progresses
PAGE = 1000
log = logging.getLogger(__name__)
# a key, or how to find it once it is published (None: none known)
PublicKeySource = Ed25519PublicKey | Callable[[], Ed25519PublicKey | None] | None


class AuditAppendError(DomainError):
    """The trail could not take the entries (too many competing writers, or a broken tail)."""


class AuditTrail(Application):
    name = "audit"
    log_section_size = 1000

    def __init__(self, clock: Clock, signing_key: Ed25519PrivateKey | None = None,
                 env: dict[str, Any] | None = None, checkpoint_every: int = CHECKPOINT_EVERY,
                 checkpoint_interval: timedelta = CHECKPOINT_INTERVAL,
                 public_key: PublicKeySource = None) -> None:
        # stored topics resolve in a process that has not written one yet
        for event_class in (AuditEntryRecorded, AuditCheckpointSigned):
            register_topic(event_class.TOPIC, event_class)
        super().__init__(env)
        self.clock = clock
        self.signing_key = signing_key
        self._public_key = public_key
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self._lock = threading.Lock()
        self._head: Head | None = None
        self.conflicts = 0  # appends retried because another writer took the seqs first
        self.checkpoint_error: str | None = None  # why the last due checkpoint was not signed
        self._last_checkpoint: tuple[int, datetime] | None = None  # (seq, time), read lazily

    # ----- writing -------------------------------------------------------------------------

    def construct_recorder(self):  # type: ignore[no-untyped-def]
        """A process recorder: entries made from another log's events are stored together with
        that log's position (a tracking record), so each source event is recorded once."""
        return self.factory.process_recorder()

    @property
    def public_key(self) -> Ed25519PublicKey | None:
        """The key checkpoints are verified with: the signing key's, or the one published beside
        it (read when first asked: the signer publishes it when it starts)."""
        if self.signing_key is not None:
            return self.signing_key.public_key()
        if callable(self._public_key):
            found = self._public_key()
            if found is not None:
                self._public_key = found
            return found
        return self._public_key

    def append(self, entries: Sequence[AuditEntry], position: Tracking | None = None) -> list[ChainedEntry]:
        """Numbers, chains and stores `entries` in one transaction; returns them as stored.

        With `position` (where `entries` end in the log they were made from) the position is
        stored in the same transaction, and a position already stored appends nothing.
        Never signs: the signer's scheduler asks `checkpoint(only_if_due=True)` every few seconds."""
        if not entries or self._applied(position):
            return []
        with self._lock:
            return self._append(entries, position)

    def _append(self, entries: Sequence[AuditEntry], position: Tracking | None) -> list[ChainedEntry]:
        for attempt in range(MAX_ATTEMPTS):
            head = self._head or self.head()
            chained = chain(head, entries)
            processing = ProcessingEvent(position)
            processing.collect_events(*(entry_event(c, self.clock.now()) for c in chained))
            try:
                self._notify(self._record(processing))
            except IntegrityError:
                self._head = None
                if self._applied(position):
                    return []  # another writer recorded the same source events first
                self.conflicts += 1
                # another writer took these seqs; a short random wait spreads the retries
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            self._head = chained[-1].head
            return chained
        raise AuditAppendError(f"the audit trail could not take {len(entries)} entries in "
                               f"{MAX_ATTEMPTS} attempts: too many writers competing")

    def position(self, source: str) -> int:
        """The last position of log `source` whose events are in the trail (0: none yet)."""
        return self.recorder.max_tracking_id(source) or 0

    def _applied(self, position: Tracking | None) -> bool:
        return position is not None and self.recorder.has_tracking_id(
            position.application_name, position.notification_id)

    def checkpoint(self, only_if_due: bool = False) -> SignedCheckpoint | None:
        """Signs the stored head if it moved since the last checkpoint (and, with `only_if_due`,
        if the policy says it is time); None if there is nothing to sign.

        The entries since the last checkpoint are verified first: a key never signs a head
        that does not follow from what it signed before."""
        if self.signing_key is None:
            raise AuditAppendError("this audit trail was opened without a signing key")
        head, last, number = self.head(), self.last_checkpoint(), self._checkpoint_count()
        if last is not None:
            # another writer may have signed since this one last looked
            self._last_checkpoint = (last.seq, last.checkpoint.time)
        if head.seq == 0 or (last is not None and last.seq >= head.seq):
            return None
        if only_if_due and not self._checkpoint_due(head.seq):
            return None
        start = Head(last.seq, last.checkpoint.head_hash) if last else GENESIS
        report = verify(self.records(after=start.seq, upto=head.seq), [last] if last else [],
                        self.signing_key.public_key(), start=start)
        if not report.ok:
            raise AuditAppendError(f"refusing to sign a checkpoint over a broken trail: {report.summary()}")
        signed = sign_checkpoint(Checkpoint.of(head, self.clock.now()), self.signing_key)
        try:
            self.save(AuditCheckpointSigned(originator_id=CHECKPOINTS_ID, originator_version=number + 1,
                                            timestamp=self.clock.now(), **signed.as_record()))
        except IntegrityError:
            self._last_checkpoint = None  # another writer signed one just now
            return None
        self._last_checkpoint = (signed.seq, signed.checkpoint.time)
        return signed

    def _checkpoint_due(self, seq: int) -> bool:
        if self._last_checkpoint is None:
            last = self.last_checkpoint()
            self._last_checkpoint = (last.seq, last.checkpoint.time) if last else (0, self.clock.now())
        last_seq, last_time = self._last_checkpoint
        return seq - last_seq >= self.checkpoint_every or (
            seq > last_seq and self.clock.now() - last_time >= self.checkpoint_interval)

    # ----- reading -------------------------------------------------------------------------

    def head(self) -> Head:
        """The last stored entry's seq and hash (read from the store, not this process)."""
        last = self.recorder.select_events(ENTRIES_ID, desc=True, limit=1)
        if not last:
            return GENESIS
        record = self._chained(last[0])
        if isinstance(record, Unreadable):
            raise AuditAppendError(f"the last audit entry cannot be read: {record.reason}")
        return record.head

    def records(self, after: int = 0, upto: int | None = None) -> Iterator[ChainedEntry | Unreadable]:
        """The stored entries after seq `after` (up to `upto`), in seq order, read a page at a time."""
        while True:
            page = self.recorder.select_events(ENTRIES_ID, gt=after, lte=upto, limit=PAGE)
            yield from (self._chained(stored) for stored in page)
            if len(page) < PAGE:
                return
            after = page[-1].originator_version

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every stored checkpoint, oldest first; an unreadable one is left out, with a warning."""
        found = []
        for stored in self.recorder.select_events(CHECKPOINTS_ID):
            try:
                found.append(SignedCheckpoint.from_record(self._state(stored)))
            except (ValueError, TypeError, KeyError) as exc:
                # as good as deleted: verify then leans on the others and on auditors' copies
                log.warning("audit checkpoint #%s cannot be read: %s", stored.originator_version, exc)
        return found

    def last_checkpoint(self) -> SignedCheckpoint | None:
        stored = self.recorder.select_events(CHECKPOINTS_ID, desc=True, limit=1)
        return SignedCheckpoint.from_record(self._state(stored[0])) if stored else None

    def verify(self, public_key: Ed25519PublicKey,
               extra_checkpoints: Iterable[SignedCheckpoint] = ()) -> VerifyReport:
        """The whole stored trail against its checkpoints and any the caller kept."""
        return verify(self.records(), [*self.checkpoints(), *extra_checkpoints], public_key)

    def _checkpoint_count(self) -> int:
        last = self.recorder.select_events(CHECKPOINTS_ID, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def _state(self, stored: StoredEvent) -> dict[str, Any]:
        state = stored.state
        if self.mapper.cipher:
            state = self.mapper.cipher.decrypt(state)
        if self.mapper.compressor:
            state = self.mapper.compressor.decompress(state)
        decoded = self.mapper.transcoder.decode(state)
        if not isinstance(decoded, dict):
            raise ValueError("the stored state is not an object")
        return {k: v for k, v in decoded.items() if k not in ("timestamp", "class_version")}

    def _chained(self, stored: StoredEvent) -> ChainedEntry | Unreadable:
        # A tampered row must come back as a finding, not stop the verification.
        try:
            return ChainedEntry.from_record(self._state(stored))
        except Exception as exc:  # noqa: BLE001 - any failure to read is the same finding
            return Unreadable(f"{type(exc).__name__}: {exc}")
