"""Budgets as they stood at a version of their stream, read forward from the last one read.

The alerts worker reads a budget after each page of its events; loading it from the store each
time would replay up to a snapshot interval (500) of events per budget per page, work done in
the ledger's process. Kept copies are moved forward with only the events since, so a page costs
about one small read per budget it touches.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from uuid import UUID

from domain.budget import Budget

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
