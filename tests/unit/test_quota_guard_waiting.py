"""The quota guard's wait for reservations to settle: decided again on every settle, bounded
in time and in how many requests may wait at once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from adapters.clock import FixedClock
from domain.budget import Budget
from domain.quota_policy import BudgetPolicy, Mode, Scope
from gateway.views import quota_guard
from gateway.views.quota_guard import QuotaGuard

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEY = (Scope.KEY, "k1")


def guard_with_cap(limit: int) -> QuotaGuard:
    guard = QuotaGuard(FixedClock(NOW))
    budget = Budget(scope=Scope.KEY, scope_id="k1", tz="UTC", at=NOW)
    budget.set_policy(BudgetPolicy(limit=limit, mode=Mode.HARD), NOW)
    guard.put(budget)
    return guard


async def test_a_waiter_is_admitted_as_soon_as_the_reservation_it_waits_for_settles() -> None:
    guard = guard_with_cap(100)
    first, _ = guard.reserve([KEY], 80)
    assert first is not None
    waiting = asyncio.ensure_future(guard.reserve_waiting([KEY], 80, 5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    started = time.monotonic()
    guard.settle(first, "fact-1", 10)  # 10 spent: 10 + 80 fits
    second, decision = await waiting
    assert second is not None and decision.allowed and time.monotonic() - started < 0.04


async def test_a_request_that_cannot_fit_even_alone_does_not_wait() -> None:
    guard = guard_with_cap(100)
    started = time.monotonic()
    refused, decision = await guard.reserve_waiting([KEY], 101, 5)
    assert refused is None and not decision.waits_on_reserved and time.monotonic() - started < 0.01


async def test_the_wait_ends_with_a_refusal_when_nothing_settles() -> None:
    guard = guard_with_cap(100)
    assert guard.reserve([KEY], 80)[0] is not None
    started = time.monotonic()
    refused, decision = await guard.reserve_waiting([KEY], 80, 0.2)
    assert refused is None and decision.waits_on_reserved
    assert 0.2 <= time.monotonic() - started < 0.5


async def test_past_the_most_that_may_wait_a_burst_is_refused_at_once(monkeypatch) -> None:
    monkeypatch.setattr(quota_guard, "MAX_WAITING", 5)
    guard = guard_with_cap(100)
    assert guard.reserve([KEY], 80)[0] is not None
    waiters = [asyncio.ensure_future(guard.reserve_waiting([KEY], 80, 1)) for _ in range(5)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    refused, _ = await guard.reserve_waiting([KEY], 80, 1)
    assert refused is None and time.monotonic() - started < 0.05
    assert not any(w.done() for w in waiters)
    for waiter in waiters:
        waiter.cancel()
