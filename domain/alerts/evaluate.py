"""Which rules fire now: a pure function of a budget's state (or an anomaly) and the rules.

A percent rule fires once its scope has spent that share of the budget's limit in the period;
an absolute spend rule fires once the period's spend reaches its amount, whether or not the
scope has a budget at all (OpenMeter #3200: absolute thresholds that never fired). Whether a
rule already fired this period is the store's business: a trigger's id is derived from the
rule, the scope and the period, and the store refuses a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.alerts.rule_spec import RuleSpec


@dataclass(frozen=True)
class BudgetState:
    """A scope's spend account at one moment: what the worker reads from the ledger."""

    scope: str  # key | user | team
    scope_id: str
    period: str  # day | week | month | none
    period_start: datetime
    period_end: datetime | None
    period_spent: int  # nano-units
    limit: int | None = None  # None: no budget set
    mode: str | None = None  # soft | hard | grace
    grace_percent: int = 0
    grace_hours: int | None = None

    @property
    def period_key(self) -> str:
        return self.period_start.isoformat()


@dataclass(frozen=True)
class AnomalyFacts:
    """An `AnomalyDetected` event's content (the anomalies application's contract)."""

    incident_id: str
    kind: str  # spike | night | error_rate
    scope: str  # user | key
    scope_id: str
    user_id: str | None
    figures: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class Firing:
    """One rule that fires for one scope in one period (or anomaly incident)."""

    rule_id: UUID
    scope: str
    scope_id: str
    period_key: str
    reason: str  # budget_percent | spend | anomaly
    facts: dict[str, Any] = field(default_factory=dict)


def percent_reached(spent: int, limit: int, percent: int) -> bool:
    """Spend reached `percent` % of the limit, exactly (integers); nothing spent reaches nothing."""
    return spent > 0 and spent * 100 >= limit * percent


def budget_firings(state: BudgetState, rules: Iterable[tuple[UUID, RuleSpec]]) -> list[Firing]:
    """The enabled budget rules watching this scope whose threshold the period's spend has reached."""
    fired: list[Firing] = []
    for rule_id, spec in rules:
        if not spec.enabled or not spec.applies_to(state.scope, state.scope_id):
            continue
        trigger = spec.trigger
        if trigger.budget_percent is not None:
            if state.limit is None or not percent_reached(state.period_spent, state.limit,
                                                          trigger.budget_percent):
                continue
            reason, threshold = "budget_percent", trigger.budget_percent
        elif trigger.spend_nanos is not None:
            if state.period_spent <= 0 or state.period_spent < trigger.spend_nanos:
                continue
            reason, threshold = "spend", trigger.spend_nanos
        else:
            continue
        fired.append(Firing(rule_id, state.scope, state.scope_id, state.period_key, reason,
                            {"threshold": threshold}))
    return fired


def anomaly_firings(anomaly: AnomalyFacts, rules: Iterable[tuple[UUID, RuleSpec]]) -> list[Firing]:
    """The enabled anomaly rules of this kind that watch its scope or, for a key's anomaly, its user."""
    fired: list[Firing] = []
    for rule_id, spec in rules:
        if not spec.enabled or spec.trigger.anomaly != anomaly.kind:
            continue
        watches = spec.applies_to(anomaly.scope, anomaly.scope_id) or (
            spec.scope == "user" and anomaly.user_id is not None and spec.scope_id == anomaly.user_id)
        if watches:
            fired.append(Firing(rule_id, anomaly.scope, anomaly.scope_id, f"incident:{anomaly.incident_id}",
                                "anomaly", {"kind": anomaly.kind}))
    return fired
