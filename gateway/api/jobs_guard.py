"""A job's own cap (`max_cost_usd`) held like a budget: a call reserves its worst case against
the job before it goes upstream, and settles to its metered cost after.

Per job this process sees
    spent = the job's cost as the ledger stored it + costs metered here it does not show yet
and refuses a call when spent + reserved + the call's worst case would pass the cap, all under
one lock, so concurrent calls on one job never settle past its cap in one gateway process.
With R gateways each sees only its own reservations: the excess is bounded by what the others
hold reserved or metered but unrecorded (as for budgets, gateway/views/quota_guard.py).

It also knows a job's calls in flight, so a completion can wait for them (`pending`), and the
jobs that ended recently (`ENDED_KEPT` of them): a call that read its job as running just before
the job completed is refused when it reserves, not served on an ended job.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

from domain.services.job_states import JobState


@dataclass
class _Account:
    version: int = 0
    ledger_cost: int = 0
    reserved: int = 0
    in_flight: int = 0
    unacked: dict[str, int] = field(default_factory=dict)
    closing: bool = False  # also set for good once the job ended


ENDED_KEPT = 50_000  # the race is milliseconds wide; a few MB at most


class Hold(NamedTuple):
    job_id: str
    amount: int


class Refusal(NamedTuple):
    closing: bool
    spent: int
    reserved: int


class JobGuard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, _Account] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()

    def unrecorded(self, job_id: str) -> list[str]:
        """The ids of the facts metered here the job did not show when last observed."""
        with self._lock:
            account = self._jobs.get(job_id)
            return [] if account is None else list(account.unacked)

    def observe(self, job: JobState) -> None:
        """Takes the job as the ledger stored it (a newer version only); `job.recorded` says
        which of the ids `unrecorded` gave it holds. An id metered after that question stays
        counted here too until the next observation: spend is over-counted, never under."""
        with self._lock:
            account = self._jobs.setdefault(str(job.id), _Account())
            if job.version < account.version:
                return
            account.version, account.ledger_cost = job.version, job.cost
            for event_id in job.recorded:
                account.unacked.pop(event_id, None)
            if str(job.status) != "running":  # completed elsewhere (another gateway): no more calls
                self._end(str(job.id), account)

    def reserve(self, job_id: str, cap: int | None, amount: int) -> Hold | Refusal:
        """Holds `amount` against the job's cap, or says why not (over the cap, or completing)."""
        with self._lock:
            account = self._jobs.setdefault(job_id, _Account())
            spent = account.ledger_cost + sum(account.unacked.values())
            if account.closing or (cap is not None and spent + account.reserved + amount > cap):
                return Refusal(account.closing, spent, account.reserved)
            account.reserved += amount
            account.in_flight += 1
            return Hold(job_id, amount)

    def settle(self, hold: Hold, event_id: str | None, cost: int) -> None:
        """Replaces the hold with the call's metered cost (None: nothing was metered)."""
        with self._lock:
            account = self._jobs.get(hold.job_id)
            if account is None:
                return
            account.reserved = max(0, account.reserved - hold.amount)
            account.in_flight = max(0, account.in_flight - 1)
            if event_id is not None:
                account.unacked[event_id] = cost

    def settle_part(self, hold: Hold, event_id: str | None, cost: int, release: int, final: bool) -> None:
        """One metered part of a /v1 call (a long stream is metered in parts): its cost counts,
        `release` of the hold is handed back, and the final part ends the call."""
        with self._lock:
            account = self._jobs.get(hold.job_id)
            if account is None:
                return
            account.reserved = max(0, account.reserved - release)
            if event_id is not None:
                account.unacked[event_id] = account.unacked.get(event_id, 0) + cost
            if final:
                account.in_flight = max(0, account.in_flight - 1)

    def spent(self, job_id: str) -> int:
        with self._lock:
            account = self._jobs.get(job_id)
            return 0 if account is None else account.ledger_cost + sum(account.unacked.values())

    def begin_closing(self, job_id: str) -> bool:
        """Refuses new calls on the job while it completes; False if another completion is on."""
        with self._lock:
            account = self._jobs.setdefault(job_id, _Account())
            if account.closing:
                return False
            account.closing = True
            return True

    def end_closing(self, job_id: str, done: bool) -> None:
        """The completion ended: done, the job takes no call again; else calls may go on."""
        with self._lock:
            if done:
                self._end(job_id, self._jobs.get(job_id))
            elif job_id in self._jobs:
                self._jobs[job_id].closing = False

    def _end(self, job_id: str, account: _Account | None) -> None:
        """Keeps the ended job as closed, its counts dropped (a call still in flight settles to
        nothing here; the ledger records it on the job), among the last ENDED_KEPT (lock held)."""
        if job_id in self._ended:
            return
        self._jobs[job_id] = _Account(version=account.version if account else 0, closing=True)
        self._ended[job_id] = None
        while len(self._ended) > ENDED_KEPT:
            self._jobs.pop(self._ended.popitem(last=False)[0], None)

    def pending(self, job_id: str) -> tuple[int, int]:
        """(calls in flight, calls metered here the ledger's job does not show yet)."""
        with self._lock:
            account = self._jobs.get(job_id)
            return (0, 0) if account is None else (account.in_flight, len(account.unacked))

    def closing(self, job_id: str) -> bool:
        with self._lock:
            account = self._jobs.get(job_id)
            return account is not None and account.closing
