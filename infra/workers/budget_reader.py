"""Budgets as the alerts worker reads them: at a version, forward from the last one read; and which
versions of a page of budget events to read.

The alerts worker reads a budget after each page of its events; loading it from the store each
time would replay up to a snapshot interval (500) of events per budget per page, work done in
the ledger's process. Kept copies are moved forward with only the events since, so a page costs
about one small read per budget it touches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from domain.alerts.evaluate import BudgetState
from domain.budget import Budget
from domain.periods import END_OF_TIME

KEPT = 10_000  # budgets kept; past this the least recently read is dropped (and loaded again if needed)


class BudgetReader:
    def __init__(self, ledger: Any, kept: int = KEPT) -> None:
        self.ledger = ledger
        self.kept = kept
        self._copies: OrderedDict[UUID, Budget] = OrderedDict()
        self.loads = self.forwards = 0

    def at(self, budget_id: UUID, version: int) -> Budget:
        """The budget right after its event `version` (a private copy: never the ledger's own)."""
        copy = self._copies.pop(budget_id, None)
        if copy is None or copy.version > version:
            copy = self.ledger.repository.get(budget_id, version=version)
            self.loads += 1
        elif copy.version < version:
            for domain_event in self.ledger.events.get(budget_id, gt=copy.version, lte=version):
                copy = domain_event.mutate(copy)
            self.forwards += 1
        self._copies[budget_id] = copy
        if len(self._copies) > self.kept:
            self._copies.popitem(last=False)
        return copy


def evaluation_points(notifications: Sequence[Any]) -> list[tuple[UUID, int]]:
    """(budget id, version) to read: each budget's last change before each rollover, and at the end."""
    points: list[tuple[UUID, int]] = []
    last: dict[UUID, int] = {}
    for n in notifications:
        if n.topic == "meterline.BudgetPeriodRolledOver":
            if n.originator_id in last:
                points.append((n.originator_id, last.pop(n.originator_id)))
        else:
            last[n.originator_id] = n.originator_version
    return points + list(last.items())


def budget_state(budget: Budget) -> BudgetState:
    policy = budget.policy
    end = budget.bounds(budget.period_start)[1]
    return BudgetState(str(budget.scope), budget.scope_id, str(budget.period), budget.period_start,
                       None if end >= END_OF_TIME else end, budget.period_spent,
                       limit=policy.limit if policy else None, mode=str(policy.mode) if policy else None,
                       grace_percent=policy.grace_percent if policy else 0,
                       grace_hours=policy.grace_hours if policy else None)
