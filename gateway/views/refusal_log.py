"""The refusal log: decision records of refused /v1 requests, queued in memory and written in
batches by a thread of its own, so a refusal costs the request path a dict and a lock.

Under a flood only the first `KEEP_PER_MINUTE` refusals of each key and rule in a wall-clock
minute are kept whole (a flood of unknown keys is one group per rule: there is no key); the
rest are counted, and each count is written as one `RefusalsCounted` when its minute ends.
So storage grows at most by (KEEP_PER_MINUTE + 1) records per key, rule and minute, whatever
the request rate. At most `MAX_PENDING` records wait for the writer; past that they are
counted too. Records still queued are lost if the process dies (at most ~1 s of them): they
explain refusals, they bill nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)
KEEP_PER_MINUTE = 20
MAX_PENDING = 10_000
FLUSH_EVERY_S = 1.0
Group = tuple[str | None, str]  # (key id, rule)


class RefusalLog:
    def __init__(self, open_store: Callable[[], Any] | None, background: bool = True) -> None:
        """`background`: a thread writes every second (False: only `flush` writes, for tests)."""
        self._open_store = open_store
        self._background = background
        self._store: Any = None
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}  # queued and not yet written, for explain
        self._minute = 0
        self._kept: dict[Group, int] = {}
        self._counted: dict[Group, int] = {}
        self._counts_due: list[tuple[datetime, str | None, str, int]] = []
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self.written = 0
        self.counted = 0

    # ----- the request path ----------------------------------------------------------------

    def add(self, record: dict[str, Any]) -> bool:
        """Queues a record (RefusalRecord's fields); False if it was only counted."""
        minute = int(time.time() // 60)
        group = (record["key_id"], record["rule"])
        with self._lock:
            if minute != self._minute:
                self._close_minute(minute)
            kept = self._kept.get(group, 0)
            if kept >= KEEP_PER_MINUTE or len(self._pending) >= MAX_PENDING:
                self._counted[group] = self._counted.get(group, 0) + 1
                self.counted += 1
                return False
            self._kept[group] = kept + 1
            self._pending.append(record)
            self._by_id[record["request_id"]] = record
            if self._writer is None and self._open_store is not None and self._background:
                self._writer = threading.Thread(target=self._write_forever, name="refusal-log",
                                                daemon=True)
                self._writer.start()
        return True

    def _close_minute(self, minute: int) -> None:
        """Called with the lock held: the counts of the minute that ended become due."""
        if self._minute:
            start = datetime.fromtimestamp(self._minute * 60, tz=UTC)
            self._counts_due += [(start, key_id, rule, n) for (key_id, rule), n in self._counted.items()]
        self._minute, self._kept, self._counted = minute, {}, {}

    # ----- reading -------------------------------------------------------------------------

    def queued(self, request_id: str) -> dict[str, Any] | None:
        """A record not yet written, so `explain` answers at once after a refusal."""
        return self._by_id.get(request_id)

    def store(self) -> Any:
        """The decisions store (opened on first use); None when this log has none."""
        with self._lock:
            if self._store is None and self._open_store is not None:
                self._store = self._open_store()
            return self._store

    # ----- the writer ----------------------------------------------------------------------

    def flush(self, close_minute: bool = False) -> int:
        """Writes what is queued (and, with `close_minute`, the current minute's counts);
        returns how many records were written. The writer thread calls it every second."""
        with self._lock:
            if close_minute:
                self._close_minute(int(time.time() // 60) + 1)
            records, self._pending = self._pending, []
            counts, self._counts_due = self._counts_due, []
        if not records and not counts:
            return 0
        try:
            self.store().record(records, counts)
        except Exception:  # the request path must never see it: the records are lost, say so
            log.exception("writing %d refusal records failed; they are dropped", len(records))
            return 0
        finally:
            with self._lock:
                for record in records:
                    self._by_id.pop(record["request_id"], None)
        self.written += len(records)
        return len(records)

    def _write_forever(self) -> None:
        while True:
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            with self._lock:
                if self._minute and int(time.time() // 60) != self._minute:
                    self._close_minute(int(time.time() // 60))
            self.flush()
