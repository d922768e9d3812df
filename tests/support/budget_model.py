"""The model side of the budget state machine: keys, zones, strategies, and counters kept in step."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st

from domain.budget import Budget
from domain.periods import Period, period_bounds
from domain.quota_policy import BudgetPolicy, Mode, Scope

KEYS = {"k1": ("u1", "t1"), "k2": ("u1", "t1"), "k3": ("u2", "t1"), "k4": ("u3", None)}
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
ScopeKey = tuple[Scope, str]

settings.register_profile("budget-machine", max_examples=200, stateful_step_count=30,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("budget-machine-long", max_examples=2_000, stateful_step_count=80,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = settings.get_profile(os.environ.get("BUDGET_MACHINE_PROFILE", "budget-machine"))


def scopes_of(key: str) -> list[ScopeKey]:
    user, team = KEYS[key]
    return [(Scope.KEY, key), (Scope.USER, user)] + ([(Scope.TEAM, team)] if team else [])


ALL_SCOPES = sorted({s for key in KEYS for s in scopes_of(key)})


CALENDAR = [Period.DAY, Period.WEEK, Period.MONTH]
POLICIES = {  # built once: a strategy made per draw costs more than the step it draws for
    period: st.builds(BudgetPolicy, limit=st.integers(0, 2_000), period=st.just(period),
                      mode=st.sampled_from(Mode), grace_percent=st.sampled_from([0, 10, 25, 100]),
                      grace_hours=st.sampled_from([None, 1, 2, 6, 24, 72]))
    for period in CALENDAR
}


steps = st.sampled_from([timedelta(minutes=1), timedelta(minutes=40), timedelta(hours=1),
                         timedelta(hours=3), timedelta(hours=11), timedelta(days=1),
                         timedelta(days=2), timedelta(days=7), timedelta(days=31)]) | st.timedeltas(
    min_value=timedelta(seconds=1), max_value=timedelta(hours=12))


def state_of(budget: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(budget).items() if k != "_pending_events"}


class BudgetModel:
    """The budgets, their replicas and the integer model; events and the clock keep them in step."""

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2025, 1, 1, tzinfo=UTC)
        self.tz = "UTC"
        self.budgets: dict[ScopeKey, Budget] = {}
        self.replicas: dict[ScopeKey, Any] = {}      # folded from events as they are recorded
        self.recorded: dict[ScopeKey, list[Any]] = {}
        # The model: integer counters only.
        self.spent: dict[ScopeKey, int] = {}          # settled in the current period
        self.reserved: dict[ScopeKey, int] = {}       # outstanding reservations
        self.bound: dict[ScopeKey, int | None] = {}   # cap at the last admission; None: unbounded
        self.period_start: dict[ScopeKey, datetime] = {}
        self.period_index: Counter[ScopeKey] = Counter()
        self.thresholds: Counter[tuple[ScopeKey, int, int]] = Counter()
        self.held: dict[int, tuple[str, int, int]] = {}  # reservation id -> (key, amount, tick)
        self.ids = count(1)
        # Logical time of admissions and policy changes, for the unchanged-cap corollary.
        self.ticks = count(1)
        self.policy_tick: dict[ScopeKey, int] = {}
        self.first_settled_admission: dict[ScopeKey, int | None] = {}  # in the current period

    def _move_to(self, now: datetime) -> None:
        note(f"clock {self.now.isoformat()} -> {now.isoformat()}")
        self.now = now
        for scope, budget in self.budgets.items():
            budget.observe(now)
            self._collect(scope)
            start = period_bounds(budget.policy.period, now, self.tz)[0]
            if start != self.period_start[scope]:
                self.period_start[scope], self.spent[scope] = start, 0
                self.first_settled_admission[scope] = None

    def _collect(self, scope: ScopeKey) -> None:
        """Takes the events a command recorded, folds them into the replica, checks thresholds."""
        for event in self.budgets[scope].collect_events():
            self.recorded[scope].append(event)
            self.replicas[scope] = event.mutate(self.replicas[scope])
            name = type(event).__name__
            if name == "PeriodRolledOver":
                self.period_index[scope] += 1
            elif name == "ThresholdCrossed":
                crossing = (scope, self.period_index[scope], event.percent)
                self.thresholds[crossing] += 1
                assert self.thresholds[crossing] == 1, f"{scope} crossed {event.percent}% twice"
