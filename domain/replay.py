"""The domain as it stood at an instant: budgets and keys folded from their events up to it.

An event belongs to the past of `until` when the business time it carries (`at`, the
injected clock's reading when it was recorded) is at or before `until`. An aggregate's
events are folded in version order and the fold stops at its first event past `until`,
so each aggregate is exactly one of the versions the live system held.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.budget import Budget
from domain.keys import ApiKey
from domain.quota_policy import Mode, thresholds_reached


def fold_until(events: Iterable[Any], until: datetime) -> dict[UUID, Any]:
    """Every aggregate the events (in each aggregate's version order) built by `until`."""
    built: dict[UUID, Any] = {}
    stopped: set[UUID] = set()
    for event in events:
        owner = event.originator_id
        if owner in stopped:
            continue
        if event.at > until:
            stopped.add(owner)
            continue
        built[owner] = event.mutate(built.get(owner))
    return built


@dataclass(frozen=True)
class BudgetAt:
    """A budget at an instant: its policy then, and its spend in the period containing it."""

    scope: str
    scope_id: str
    limit: int | None
    mode: str | None
    period: str
    period_start: datetime
    period_end: datetime
    spent: int
    state: str  # ok | warning (80 % reached) | grace (past the limit, within grace) | blocked
    policy_version: int | None
    version: int  # of the Budget aggregate: the event it was folded to


def budget_at(budget: Budget, at: datetime) -> BudgetAt:
    """What the quota guard saw of `budget` at `at` (spend settled into the ledger by then)."""
    start, end = budget.bounds(at)
    spent = budget.spent_between(start, end)
    policy = budget.policy
    return BudgetAt(str(budget.scope), budget.scope_id, policy.limit if policy else None,
                    str(policy.mode) if policy else None, str(budget.period), start, end, spent,
                    _state(budget, spent, at, start), policy.version if policy else None,
                    budget.version)


def _state(budget: Budget, spent: int, at: datetime, start: datetime) -> str:
    policy = budget.policy
    if policy is None:
        return "ok"
    grace_began = budget.grace_started_at if budget.grace_started_at and budget.grace_started_at >= start \
        else None
    window_over = (policy.mode is Mode.GRACE and policy.grace_hours is not None
                   and grace_began is not None
                   and (at - grace_began).total_seconds() >= policy.grace_hours * 3600)
    if spent > 0 and ((policy.cap is not None and spent >= policy.cap)
                      or (window_over and spent >= policy.limit)):
        return "blocked"
    if policy.mode is Mode.GRACE and spent > 0 and spent >= policy.limit:
        return "grace"
    return "warning" if thresholds_reached(spent, policy.limit) else "ok"


@dataclass(frozen=True)
class KeyAt:
    key_id: str
    user_id: str
    team_id: str | None
    name: str
    prefix: str
    status: str
    models: list[str]
    expires_at: datetime | None
    version: int


def key_at(key: ApiKey, at: datetime) -> KeyAt:
    """A key at an instant: an active key whose expiry has passed reads expired, as the
    gateway refused it then, before the scheduler recorded the expiry."""
    return KeyAt(str(key.id), key.user_id, key.team_id, key.name, key.prefix,
                 str(key.status_at(at)), list(key.models), key.expires_at, key.version)
