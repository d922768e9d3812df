"""QuotaGuard: reserve the worst case before forwarding, settle to the metered cost after.

For every scope a request falls under, the guard sees
    spent = the ledger's spend this period + costs settled here but not yet in the ledger
and refuses when spent + reserved + the new reservation would pass the policy's cap.
With one gateway process every request is in exactly one of those terms, so settled
spend never passes the cap.

Reservations are worst cases, far above what most requests cost, so a burst can find the
cap held by reservations while money is left. A request refused only because of what
others hold reserved (spent plus its own worst case fits) may wait, bounded, for them to
settle, and is decided again each time something settles (`reserve_waiting`).

With R replicas a replica cannot see the others' reserved or unacknowledged amounts: the
excess is bounded by what they hold (see README).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from domain.budget import Budget
from domain.ports.clock import Clock
from domain.quota_policy import Decision, Scope, Verdict, decide, strictest

ScopeKey = tuple[Scope, str]
MAX_WAITING = 512  # requests waiting for reservations to settle, at most, per process


@dataclass
class _Account:
    budget: Budget
    reserved: int = 0
    unacked: dict[str, int] = field(default_factory=dict)
    unacked_total: int = 0
    _cache: tuple[int, datetime, int] | None = None  # (budget version, period start, spent)

    def ledger_spent(self, now: datetime) -> tuple[datetime, int]:
        start, end = self.budget.bounds(now)
        if self._cache is None or self._cache[:2] != (self.budget.version, start):
            self._cache = (self.budget.version, start, self.budget.spent_between(start, end))
        return start, self._cache[2]


class Reservation(NamedTuple):  # immutable, and one is built per request
    id: int
    scopes: tuple[ScopeKey, ...]
    amount: int
    held: tuple[ScopeKey, ...] = ()  # the scopes that had a budget, so hold `amount`


class QuotaGuard:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[ScopeKey, _Account] = {}
        self._by_budget_id: dict[Any, ScopeKey] = {}
        self._ids = itertools.count(1)
        self._waiters: dict[asyncio.Future[None], asyncio.AbstractEventLoop] = {}

    # ----- the hot path --------------------------------------------------------------------

    def reserve(self, scopes: list[ScopeKey], amount: int, now: datetime | None = None
                ) -> tuple[Reservation | None, Decision]:
        """Holds `amount` against every scope, or refuses with the strictest scope's reason."""
        now = now or self._clock.now()
        with self._lock:
            decisions = [d for d in (self._decide(key, amount, now) for key in scopes) if d]
            verdict = strictest(decisions)
            if verdict.verdict is Verdict.REFUSE:
                refusals = [d for d in decisions if d.verdict is Verdict.REFUSE]
                waits = all(d.waits_on_reserved for d in refusals)
                return None, replace(verdict, waits_on_reserved=waits, checked=tuple(decisions))
            held = tuple(key for key in scopes if key in self._accounts)
            for key in held:
                self._accounts[key].reserved += amount
            return Reservation(next(self._ids), tuple(scopes), amount, held), verdict

    async def reserve_waiting(self, scopes: list[ScopeKey], amount: int, wait_s: float
                              ) -> tuple[Reservation | None, Decision]:
        """`reserve`, but a request refused only for what others hold reserved waits up to
        `wait_s` for them to settle, deciding again after each change. At most
        `MAX_WAITING` requests wait at once: past that a burst is refused at once, so a
        flood of waiters cannot make every settle wake thousands of them."""
        deadline = time.monotonic() + wait_s
        while True:
            reservation, decision = self.reserve(scopes, amount)
            left = deadline - time.monotonic()
            if reservation is not None or not decision.waits_on_reserved or left <= 0:
                return reservation, decision
            loop = asyncio.get_running_loop()
            changed: asyncio.Future[None] = loop.create_future()
            with self._lock:
                if len(self._waiters) >= MAX_WAITING:
                    return None, decision
                self._waiters[changed] = loop
            try:
                # Re-decide at least every 50 ms: a budget period may roll over meanwhile.
                await asyncio.wait_for(asyncio.shield(changed), min(left, 0.05))
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    self._waiters.pop(changed, None)

    def _wake_waiters(self) -> None:
        """Called with the lock held, from any thread, when held or spent amounts changed."""
        for changed, loop in self._waiters.items():
            loop.call_soon_threadsafe(_set_once, changed)
        self._waiters.clear()

    def settle(self, reservation: Reservation, event_id: str, cost: int,
               release: int | None = None) -> None:
        """Replaces a reservation (or `release` of it, for a part of a stream) with the
        metered cost, until the ledger acknowledges it."""
        release = reservation.amount if release is None else release
        with self._lock:
            for key in reservation.scopes:
                account = self._accounts.get(key)
                if account is None:
                    continue
                if key in reservation.held:  # a budget set since holds nothing of this request
                    account.reserved = max(0, account.reserved - release)
                if event_id not in account.unacked:
                    account.unacked[event_id] = cost
                    account.unacked_total += cost
            if self._waiters:
                self._wake_waiters()

    def release(self, reservation: Reservation, amount: int | None = None) -> None:
        """Hands back a reservation unused (or `amount` of it: what a stream's parts left)."""
        amount = reservation.amount if amount is None else amount
        with self._lock:
            for key in reservation.held:
                account = self._accounts.get(key)
                if account is not None:
                    account.reserved = max(0, account.reserved - amount)
            if self._waiters:
                self._wake_waiters()

    def forget(self, scopes: tuple[ScopeKey, ...], event_id: str) -> None:
        """Drops a settled cost that was never metered (the metering publish failed)."""
        with self._lock:
            for key in scopes:
                account = self._accounts.get(key)
                if account is not None and event_id in account.unacked:
                    account.unacked_total -= account.unacked.pop(event_id)
            if self._waiters:
                self._wake_waiters()

    def _decide(self, key: ScopeKey, amount: int, now: datetime) -> Decision | None:
        account = self._accounts.get(key)
        if account is None or account.budget.policy is None:
            return None
        budget = account.budget
        start, spent = account.ledger_spent(now)
        grace = budget.grace_started_at
        if grace is not None and grace < start:
            grace = None  # a grace window of an earlier period
        return decide(budget.policy, scope=key[0], scope_id=key[1],
                      spent=spent + account.unacked_total, reserved=account.reserved,
                      requested=amount, now=now, grace_started_at=grace)

    # ----- fed by the ledger's events ------------------------------------------------------

    def apply(self, event: Any) -> bool:
        """Advances a budget copy with a stored event; False on a version gap (reload it)."""
        with self._lock:
            account = self._find(event.originator_id)
            version = account.budget.version if account else 0
            if event.originator_version <= version:
                return True
            if event.originator_version != version + 1:
                return False
            budget = event.mutate(account.budget if account else None)
            if account is None:
                account = self._install(budget)
            account.budget = budget
            for request_id in getattr(event, "request_ids", ()):
                if request_id in account.unacked:
                    account.unacked_total -= account.unacked.pop(request_id)
            if self._waiters:
                self._wake_waiters()
            return True

    def put(self, budget: Budget) -> None:
        """Installs a freshly loaded budget (start-up or gap repair)."""
        with self._lock:
            account = self._find(budget.id)
            if account is None:
                self._install(budget)
            elif budget.version >= account.budget.version:
                account.budget = budget
            if self._waiters:
                self._wake_waiters()

    def _install(self, budget: Budget) -> _Account:
        key = (budget.scope, budget.scope_id)
        self._by_budget_id[budget.id] = key
        return self._accounts.setdefault(key, _Account(budget))

    def _find(self, budget_id: Any) -> _Account | None:
        key = self._by_budget_id.get(budget_id)
        return self._accounts.get(key) if key else None

    # ----- explaining ----------------------------------------------------------------------

    def snapshot(self, key: ScopeKey) -> dict[str, Any] | None:
        """The counters behind a decision for one scope, for admins asking "why refused"."""
        with self._lock:
            account = self._accounts.get(key)
            if account is None:
                return None
            now = self._clock.now()
            start, spent = account.ledger_spent(now)
            policy = account.budget.policy
            return {"scope": str(key[0]), "id": key[1], "period_start": start.isoformat(),
                    "ledger_spent": spent, "unacknowledged": account.unacked_total,
                    "reserved": account.reserved,
                    "policy": None if policy is None else {
                        "limit": policy.limit, "period": str(policy.period),
                        "mode": str(policy.mode), "grace_percent": policy.grace_percent,
                        "grace_hours": policy.grace_hours, "version": policy.version}}


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
