"""How values the ledger's events and snapshots hold, beyond JSON's own, are stored.

The names (`meterline_budget_policy`, `meterline_set`) are written into stored events: keep
them, whatever the classes are called.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Transcoding

from domain.periods import Period
from domain.quota_policy import BudgetPolicy, Mode


class BudgetPolicyAsDict(Transcoding):
    type = BudgetPolicy
    name = "meterline_budget_policy"

    def encode(self, obj: BudgetPolicy) -> dict[str, Any]:
        return {"limit": obj.limit, "period": str(obj.period), "mode": str(obj.mode),
                "grace_percent": obj.grace_percent, "grace_hours": obj.grace_hours,
                "version": obj.version}

    def decode(self, data: dict[str, Any]) -> BudgetPolicy:
        return BudgetPolicy(data["limit"], Period(data["period"]), Mode(data["mode"]),
                            data["grace_percent"], data["grace_hours"], data["version"])


class SetAsList(Transcoding):
    type = set
    name = "meterline_set"

    def encode(self, obj: set[Any]) -> list[Any]:
        return sorted(obj)

    def decode(self, data: list[Any]) -> set[Any]:
        return set(data)
