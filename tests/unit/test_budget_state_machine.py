"""A QuotaGuard-like reservation loop against Budget aggregates, checked against integer counters.

The real system is what one gateway process does: before a request it reserves a worst-case
amount, allowed only if `decide` allows it for the key, its user and its team (`strictest`);
afterwards the reservation settles to the metered cost, which every scope's `Budget` accrues,
or it is released. Admins change limits and modes; the clock moves within and across day,
week and month boundaries and every budget observes it. The model is a few dicts of integers.

The guarantee, stated exactly. For every scope s, after every step:

    spent(s, current period) + reserved(s)  <=  C(s)

where reserved(s) sums the outstanding reservations that include s, and C(s) is the cap
(the limit for hard, limit + grace allowance for grace, unbounded for soft) that was in force
for s when the most recent reservation including s was admitted (0 before any admission).

Why this and not "spend <= the current cap": the left side grows only at an admission, and
decide admits only if spent + reserved + requested <= the cap then in force. A settle moves
at most the reserved amount into spent (the actual cost never exceeds the reservation); a
release or a period rollover only shrinks the sum; a policy change does not move it. So
lowering a limit below what is already spent or reserved cannot un-spend it (the bound stays
the cap that admitted the money), and a raised limit takes effect at the next admission.
A reservation made late in one period and settled early in the next lands in the next; it is
covered because it counted as reserved for every admission in that next period. Corollary:
while a scope's policy stays the same, hard spend never passes the limit and grace spend never
passes limit + grace in any period. That corollary is checked on its own too, whenever the
scope's policy was last set before every reservation whose money is in the period's spend or
still reserved was admitted.  Soft scopes never refuse.

Further invariants: each ThresholdCrossed (80/95/100) at most once per scope and period; a
blocked budget refuses every request; a budget at or past its cap is blocked; period spend
equals the model's counter; and folding the recorded events rebuilds the same budget, both
event by event as they are produced and, at the end, through a Ledger on the in-memory store.

BUDGET_MACHINE_PROFILE=budget-machine-long searches deeper (2,000 runs of 80 steps, minutes).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from adapters.clock import FixedClock
from adapters.eventstore.environments import memory_env
from domain.budget import Budget, local_day
from domain.periods import period_bounds
from domain.quota_policy import Mode, Verdict, decide, strictest
from domain.services.ledger import Ledger
from tests.support.budget_model import (
    ALL_SCOPES,
    CALENDAR,
    KEYS,
    POLICIES,
    PROFILE,
    ZONES,
    BudgetModel,
    ScopeKey,
    scopes_of,
    state_of,
    steps,
)


class BudgetMachine(BudgetModel, RuleBasedStateMachine):
    reservations = Bundle("reservations")

    # ----- set-up --------------------------------------------------------------------------

    @initialize(start=st.datetimes(datetime(2024, 1, 1), datetime(2026, 12, 31),
                                   timezones=st.just(UTC)),
                tz=st.sampled_from(ZONES), data=st.data())
    def open_budgets(self, start: datetime, tz: str, data: st.DataObject) -> None:
        self.now, self.tz = start, tz
        note(f"start {start.isoformat()} in {tz}")
        for scope in ALL_SCOPES:
            period = data.draw(st.sampled_from(CALENDAR), label=f"period of {scope}")
            policy = data.draw(POLICIES[period], label=f"policy of {scope}")
            budget = Budget(scope=scope[0], scope_id=scope[1], tz=tz, at=start)
            budget.set_policy(policy, start)
            self.budgets[scope], self.replicas[scope], self.recorded[scope] = budget, None, []
            self.spent[scope], self.reserved[scope], self.bound[scope] = 0, 0, 0
            self.period_start[scope] = period_bounds(period, start, tz)[0]
            self.policy_tick[scope], self.first_settled_admission[scope] = next(self.ticks), None
            self._collect(scope)

    # ----- rules ---------------------------------------------------------------------------

    @rule(target=reservations, key=st.sampled_from(sorted(KEYS)), amount=st.integers(1, 800))
    def reserve(self, key: str, amount: int) -> Any:
        decisions = []
        for scope in scopes_of(key):
            budget = self.budgets[scope]
            decision = decide(budget.policy, scope=scope[0], scope_id=scope[1],
                              spent=budget.period_spent, reserved=self.reserved[scope],
                              requested=amount, now=self.now,
                              grace_started_at=budget.grace_started_at)
            if budget.policy.mode is Mode.SOFT:
                assert decision.verdict is not Verdict.REFUSE, f"soft {scope} refused: {decision}"
            if budget.blocked:
                assert decision.verdict is Verdict.REFUSE, f"blocked {scope} allowed: {decision}"
            decisions.append(decision)
        verdict = strictest(decisions)
        if not verdict.allowed:
            note(f"reserve {amount} on {key}: refused by {verdict.scope} {verdict.scope_id}")
            return multiple()
        rid = next(self.ids)
        self.held[rid] = (key, amount, next(self.ticks))
        for scope in scopes_of(key):
            self.reserved[scope] += amount
            self.bound[scope] = self.budgets[scope].policy.cap
        note(f"reserve #{rid}: {amount} on {key} ({verdict.verdict})")
        return rid

    @rule(rid=consumes(reservations), percent=st.integers(0, 100))
    def settle(self, rid: int, percent: int) -> None:
        key, amount, admitted = self.held.pop(rid)
        actual = amount * percent // 100
        note(f"settle #{rid}: {actual} of {amount} on {key} at {self.now.isoformat()}")
        for scope in scopes_of(key):
            self.budgets[scope].accrue(actual, 1, local_day(self.now, self.tz), self.now,
                                       [f"request-{rid}"])
            self._collect(scope)
            self.spent[scope] += actual
            self.reserved[scope] -= amount
            first = self.first_settled_admission[scope]
            self.first_settled_admission[scope] = admitted if first is None else min(first, admitted)

    @rule(rid=consumes(reservations))
    def release(self, rid: int) -> None:
        key, amount, _ = self.held.pop(rid)
        note(f"release #{rid}: {amount} on {key}")
        for scope in scopes_of(key):
            self.reserved[scope] -= amount

    @rule(scope=st.sampled_from(ALL_SCOPES), data=st.data())
    def change_policy(self, scope: ScopeKey, data: st.DataObject) -> None:
        budget = self.budgets[scope]
        policy = data.draw(POLICIES[budget.policy.period], label="new policy")
        note(f"policy of {scope}: {policy.mode} limit {policy.limit} grace "
             f"{policy.grace_percent}% {policy.grace_hours} h")
        budget.set_policy(policy, self.now)
        self.policy_tick[scope] = next(self.ticks)
        self._collect(scope)

    @precondition(lambda self: any(b.blocked for b in self.budgets.values()))
    @rule(data=st.data(), extra=st.integers(1, 1_000))
    def raise_limit(self, data: st.DataObject, extra: int) -> None:
        """What an admin does for a blocked team: the same policy, a limit above the spend."""
        scope = data.draw(st.sampled_from([s for s, b in self.budgets.items() if b.blocked]),
                          label="blocked scope")
        budget = self.budgets[scope]
        policy = replace(budget.policy, limit=max(budget.policy.limit, budget.period_spent) + extra)
        note(f"raise the limit of {scope} to {policy.limit} (blocked: {budget.blocked})")
        budget.set_policy(policy, self.now)
        self.policy_tick[scope] = next(self.ticks)
        self._collect(scope)

    @rule(step=steps)
    def advance(self, step: timedelta) -> None:
        self._move_to(self.now + step)

    @rule(scope=st.sampled_from(ALL_SCOPES), before=st.sampled_from([1, 60, 0]))
    def advance_to_period_end(self, scope: ScopeKey, before: int) -> None:
        """Lands just before, or exactly on, the end of a scope's current period."""
        end = self.budgets[scope].bounds(self.now)[1]
        self._move_to(max(self.now, end - timedelta(seconds=before)))

    # ----- invariants ----------------------------------------------------------------------

    @precondition(lambda self: bool(self.budgets))
    @invariant()
    def every_budget_keeps_the_promises(self) -> None:
        for scope, budget in self.budgets.items():
            spent = budget.period_spent  # computed once: it sums the kept days
            self.spend_and_reservations_stay_within_the_cap_that_admitted_them(scope, spent)
            self.settled_spend_never_passes_an_unchanged_cap(scope, budget, spent)
            self.period_spend_matches_the_model(scope, budget, spent)
            self.blocks_follow_the_policy(scope, budget, spent)
            assert state_of(self.replicas[scope]) == state_of(budget), f"{scope}: fold differs"

    def spend_and_reservations_stay_within_the_cap_that_admitted_them(self, scope: ScopeKey,
                                                                      spent: int) -> None:
        bound = self.bound[scope]
        if bound is not None:
            assert spent + self.reserved[scope] <= bound, (
                f"{scope}: spent {spent} + reserved {self.reserved[scope]} > cap {bound} "
                "that admitted the last reservation")

    def settled_spend_never_passes_an_unchanged_cap(self, scope: ScopeKey, budget: Budget,
                                                    spent: int) -> None:
        admissions = [tick for key, _, tick in self.held.values() if scope in scopes_of(key)]
        if self.first_settled_admission[scope] is not None:
            admissions.append(self.first_settled_admission[scope])
        cap = budget.policy.cap
        if cap is not None and admissions and self.policy_tick[scope] < min(admissions):
            assert spent <= cap, f"{scope}: {budget.policy.mode} spend {spent} passed cap {cap}"

    def period_spend_matches_the_model(self, scope: ScopeKey, budget: Budget, spent: int) -> None:
        assert budget.period_start == self.period_start[scope], scope
        assert spent == self.spent[scope], f"{scope}: spent {spent}, model {self.spent[scope]}"
        assert self.reserved[scope] >= 0

    def blocks_follow_the_policy(self, scope: ScopeKey, budget: Budget, spent: int) -> None:
        policy = budget.policy
        if policy.mode is Mode.SOFT:
            assert not budget.blocked, f"soft {scope} is blocked"
        if policy.cap is not None and spent >= policy.cap and spent > 0:
            assert budget.blocked, f"{scope} spent {spent} of cap {policy.cap} but is not blocked"
        if (policy.mode is Mode.GRACE and policy.grace_hours is not None
                and budget.grace_started_at is not None
                and self.now >= budget.grace_started_at + timedelta(hours=policy.grace_hours)):
            assert budget.blocked, f"{scope}: the grace window is over but it is not blocked"
        if budget.blocked:  # what the gateway hears (QuotaBlocked) and what decide says agree
            decision = decide(policy, scope=scope[0], scope_id=scope[1], spent=spent, reserved=0,
                              requested=1, now=self.now, grace_started_at=budget.grace_started_at)
            assert decision.verdict is Verdict.REFUSE, f"{scope} is blocked, yet {decision}"

    def teardown(self) -> None:
        if not self.budgets:
            return
        ledger = Ledger(FixedClock(self.now), self.tz, env=memory_env())
        for scope, events in self.recorded.items():
            ledger.save(*events)
            stored = ledger.repository.get(Budget.id_for(*scope))
            assert state_of(stored) == state_of(self.budgets[scope]), scope


BudgetMachine.TestCase.settings = PROFILE
test_budget_state_machine = BudgetMachine.TestCase
