"""Access events for the audit trail, kept off the request path: queued in memory, appended in batches.

Recording is a dict update or a list append on the event loop; a background task (started
by the app's lifespan) appends every ~100 ms or 500 entries, in a worker thread. Failed
authentication and permission refusals are counted per source, minute and kind and written
once that minute is over, so a flood of bad keys adds one entry per source per minute, not
one per request. A minute with more than `max_buckets` sources folds the rest into one
entry without an address: memory and the trail stay bounded whatever the flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from domain.audit import SYSTEM, AuditEntry, format_time
from domain.ports.clock import Clock

log = logging.getLogger(__name__)
OVERFLOW = "*"  # the path of the one counter a minute's sources past `max_buckets` share
ANONYMOUS = "anonymous"  # the actor of a failed authentication: nobody was recognised
ADMIN_PREFIX = 6  # characters of the admin token an actor shows: which token, not enough to use it
WINDOW = timedelta(minutes=1)
FLUSH_S = 0.1
BATCH = 500
MAX_BUCKETS = 10_000  # distinct (source, kind) counters in one minute
MAX_QUEUE = 100_000  # entries waiting while the store is unavailable; past it they are counted, not kept


@dataclass
class _Bucket:
    first: datetime
    last: datetime
    count: int = 0
    codes: dict[str, int] = field(default_factory=dict)


# (action, surface, source_ip, actor, target, path, status)
_Key = tuple[str, str, str | None, str, str, str, int]


class AccessAudit:
    """Access events waiting for the trail. `append` is the trail's (None: recording is off)."""

    def __init__(self, clock: Clock, append: Callable[[Sequence[AuditEntry]], Any] | None = None,
                 flush_s: float = FLUSH_S, batch: int = BATCH, max_buckets: int = MAX_BUCKETS,
                 max_queue: int = MAX_QUEUE, window: timedelta = WINDOW) -> None:
        self.clock = clock
        self.window = window
        self.append = append
        self.flush_s = flush_s
        self.batch = batch
        self.max_buckets = max_buckets
        self.max_queue = max_queue
        self.queue: list[AuditEntry] = []
        self.buckets: dict[datetime, dict[_Key, _Bucket]] = {}  # by the window (minute) they count in
        self.dropped = 0
        self.appended = 0
        self._full = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.append is not None

    # ----- recording (on the event loop; no I/O) -----------------------------------------------

    def auth_failed(self, surface: str, source_ip: str | None, code: str) -> None:
        """A request whose credential was missing or unknown, on `/api` or `/v1`."""
        self._count(("AuthFailed", surface, source_ip, ANONYMOUS, "", "", 401), code)

    def refused(self, surface: str, source_ip: str | None, actor: str, target: str, path: str,
                code: str, status: int = 403) -> None:
        """A recognised caller refused permission (a user on an admin route, a key out of scope)."""
        self._count(("AccessDenied", surface, source_ip, actor or ANONYMOUS, target, path, status), code)

    def admin_action(self, *, actor: str, method: str, path: str, target: str, status: int,
                     request_id: str | None, source_ip: str | None) -> None:
        """A mutating `/api` request (whatever its outcome: the status says)."""
        details = {"method": method, "path": path, "status": status}
        try:
            entry = AuditEntry(time=self.clock.now(), actor=actor, action="AdminActionPerformed",
                               target=target, details=details, source_ip=source_ip, request_id=request_id)
        except ValueError:  # a target or id the trail cannot hold (too long, unencodable): keep the rest
            entry = AuditEntry(time=self.clock.now(), actor=actor, action="AdminActionPerformed",
                               details={**details, "target_unreadable": True}, source_ip=source_ip)
        self._enqueue(entry)

    def _enqueue(self, entry: AuditEntry) -> None:
        if not self.enabled:
            return
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            return
        self.queue.append(entry)
        if len(self.queue) >= self.batch:
            self._full.set()

    def _count(self, key: _Key, code: str) -> None:
        if not self.enabled:
            return
        now = self.clock.now()
        buckets = self.buckets.setdefault(self._window_of(now), {})
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_buckets:
                key = (key[0], key[1], None, ANONYMOUS, "", OVERFLOW, key[6])
                bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = _Bucket(now, now)
        bucket.last = now
        bucket.count += 1
        if len(bucket.codes) < 16 or code in bucket.codes:
            bucket.codes[code] = bucket.codes.get(code, 0) + 1

    def _window_of(self, at: datetime) -> datetime:
        seconds = self.window.total_seconds()
        return datetime.fromtimestamp(at.timestamp() // seconds * seconds, UTC)

    # ----- appending ------------------------------------------------------------------------

    def _closed(self, everything: bool) -> list[AuditEntry]:
        """Entries for every minute that is over (all of them at shutdown), oldest first."""
        current = self._window_of(self.clock.now())
        entries = []
        for minute in sorted(m for m in self.buckets if everything or m < current):
            for (action, surface, ip, actor, target, path, status), b in self.buckets.pop(minute).items():
                details: dict[str, Any] = {
                    "count": b.count, "surface": surface, "status": status,
                    "window_start": format_time(minute), "window_seconds": int(self.window.total_seconds()),
                    "first_at": format_time(b.first),
                    "codes": ",".join(f"{c}:{n}" for c, n in sorted(b.codes.items()))}
                if path == OVERFLOW:
                    details["overflow"] = True  # many sources that minute, counted together
                elif path:
                    details["path"] = path
                try:
                    entries.append(AuditEntry(time=b.last, actor=actor, action=action, target=target,
                                              details=details, source_ip=ip))
                except ValueError:  # a target the trail cannot hold: the count still goes in
                    entries.append(AuditEntry(time=b.last, actor=actor, action=action,
                                              details={**details, "path": "", "target_unreadable": True},
                                              source_ip=ip))
        return entries

    async def flush(self, everything: bool = False) -> int:
        """Appends what is ready: queued entries and closed minutes (every minute with
        `everything`). Entries a failed append could not store stay queued for the next try."""
        if not self.enabled:
            return 0
        ready = self.queue + self._closed(everything)
        if self.dropped:
            ready.append(AuditEntry(time=self.clock.now(), actor=SYSTEM, action="AuditEntriesDropped",
                                    details={"count": self.dropped, "reason": "queue full"}))
        self.queue, dropped, self.dropped = [], self.dropped, 0
        stored = 0
        try:
            for start in range(0, len(ready), self.batch):
                part = ready[start:start + self.batch]
                await anyio.to_thread.run_sync(self.append, part)
                stored += len(part)
        except Exception:
            log.exception("audit: appending access events failed; they stay queued")
            rest = [e for e in ready[stored:] if e.action != "AuditEntriesDropped"]
            self.queue = rest[:self.max_queue] + self.queue
            self.dropped += dropped + max(0, len(rest) - self.max_queue)
        self.appended += stored
        return stored

    async def run(self, stop: asyncio.Event) -> None:
        """Appends every `flush_s` (sooner when a batch is full) until `stop`; then everything."""
        self._full = asyncio.Event()  # this loop's: an app may be started again on another loop
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_s)
            self._full.clear()
            await self.flush()
        await self.flush(everything=True)


def admin_actor(admin_token: str) -> str:
    """The actor of the admin token: `admin:` and its first characters (a rotated token shows)."""
    return f"admin:{admin_token[:ADMIN_PREFIX]}…"
