"""A spend account per scope (key, user or team), with an optional budget policy.

Spend is kept per local day in the billing time zone, so the spend of any period
(day, week, month) is a sum of days and a change of period is exact. The account
raises threshold, exceeded, grace and block events; it never refuses spend, because
spend is a fact: refusing requests is the gateway's QuotaGuard's job.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate, event

from domain.ids import stable_id
from domain.periods import BEGINNING, Period, period_bounds, require_aware
from domain.quota_policy import BudgetPolicy, Mode, Scope, thresholds_reached

DAYS_KEPT = 70  # longer than any calendar period, so every open period is a sum of kept days


class Budget(Aggregate):
    TOPIC = "meterline.Budget"

    class Created(Aggregate.Created):
        TOPIC = "meterline.Budget.Created"

    @staticmethod
    def id_for(scope: Scope | str, scope_id: str) -> UUID:
        return stable_id("budget", str(scope), scope_id)

    @classmethod
    def create_id(cls, scope: Scope, scope_id: str, tz: str, at: datetime) -> UUID:
        return cls.id_for(scope, scope_id)

    @event("Opened", topic="meterline.BudgetOpened")
    def __init__(self, scope: Scope, scope_id: str, tz: str, at: datetime) -> None:
        self.scope = Scope(scope)
        self.scope_id = scope_id
        self.tz = tz
        self.policy: BudgetPolicy | None = None
        self.daily: dict[str, int] = {}
        self.total_spent = 0
        self.period_start = period_bounds(Period.MONTH, at, tz)[0]
        self.crossed: set[int] = set()
        self.exceeded = False
        self.grace_started_at: datetime | None = None
        self.blocked = False

    # ----- queries -------------------------------------------------------------------------

    @property
    def period(self) -> Period:
        return self.policy.period if self.policy else Period.MONTH

    def bounds(self, at: datetime) -> tuple[datetime, datetime]:
        return period_bounds(self.period, at, self.tz)

    def spent_between(self, start: datetime, end: datetime) -> int:
        if start <= BEGINNING:
            return self.total_spent
        zone = ZoneInfo(self.tz)
        first, last = start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()
        return sum(v for d, v in self.daily.items() if first <= date.fromisoformat(d) <= last)

    @property
    def period_spent(self) -> int:
        return self.spent_between(self.period_start, self.bounds(self.period_start)[1])

    # ----- commands ------------------------------------------------------------------------

    def set_policy(self, policy: BudgetPolicy, at: datetime) -> None:
        """Sets or changes the budget; an unchanged policy records nothing."""
        require_aware(at)
        if self.policy is not None and _same(self.policy, policy):
            return
        version = (self.policy.version + 1) if self.policy else 1
        self._budget_set(limit=policy.limit, period=str(policy.period), mode=str(policy.mode),
                         grace_percent=policy.grace_percent, grace_hours=policy.grace_hours,
                         policy_version=version, at=at)
        self.observe(at)
        self._evaluate(at)

    def remove_policy(self, at: datetime) -> None:
        if self.policy is None:
            return
        self._budget_removed(at=at)
        if self.blocked:
            self._restored(reason="budget removed", at=at)

    def accrue(self, amount: int, requests: int, day: str, at: datetime,
               request_ids: list[str]) -> None:
        """Adds settled spend for requests that happened on local `day` (ISO date)."""
        require_aware(at)
        if amount < 0 or requests < 0:
            raise ValueError("spend and request count must not be negative")
        self.observe(at)
        self._spend_accrued(amount=amount, requests=requests, day=day, at=at,
                            request_ids=request_ids)
        self._evaluate(at)

    def observe(self, at: datetime) -> None:
        """Rolls the period over if `at` lies past it, and closes an expired grace window."""
        start = self.bounds(at)[0]
        if start > self.period_start:
            self._rolled_over(previous_start=self.period_start, new_start=start,
                              previous_spent=self.period_spent, at=at)
            if self.blocked:
                self._restored(reason="new budget period", at=at)
            self._evaluate(at)
        if (self.grace_started_at and self.policy and self.policy.grace_hours and not self.blocked
                and at >= self.grace_started_at + timedelta(hours=self.policy.grace_hours)):
            self._blocked(reason=f"grace window of {self.policy.grace_hours} h is over", at=at)

    def _evaluate(self, at: datetime) -> None:
        """Raises the events that the current spend and policy call for, each once a period."""
        policy = self.policy
        if policy is None:
            return
        spent = self.period_spent
        for percent in thresholds_reached(spent, policy.limit):
            if percent not in self.crossed:
                self._threshold_crossed(percent=percent, spent=spent, limit=policy.limit, at=at)
        if spent > 0 and spent >= policy.limit and not self.exceeded:
            self._exceeded(spent=spent, limit=policy.limit, at=at)
            if policy.mode is Mode.GRACE and self.grace_started_at is None:
                ends = at + timedelta(hours=policy.grace_hours) if policy.grace_hours else None
                self._grace_started(at=at, ends_at=ends)
        should_block = policy.cap is not None and spent >= policy.cap and spent > 0
        if should_block and not self.blocked:
            self._blocked(reason=f"{policy.mode} budget of {policy.limit} nano-units reached", at=at)
        elif self.blocked and not should_block and not self._grace_window_over(at):
            self._restored(reason="budget allows spend again", at=at)

    def _grace_window_over(self, at: datetime) -> bool:
        p = self.policy
        return bool(p and p.mode is Mode.GRACE and p.grace_hours and self.grace_started_at
                    and at >= self.grace_started_at + timedelta(hours=p.grace_hours))

    # ----- events --------------------------------------------------------------------------

    @event("BudgetSet", topic="meterline.BudgetSet")
    def _budget_set(self, limit: int, period: str, mode: str, grace_percent: int,
                    grace_hours: int | None, policy_version: int, at: datetime) -> None:
        self.policy = BudgetPolicy(limit, Period(period), Mode(mode), grace_percent, grace_hours,
                                   policy_version)
        # A longer period (day to month, or none) takes in the days already spent.
        self.period_start = min(self.period_start, period_bounds(self.policy.period, at, self.tz)[0])
        if self.policy.mode is not Mode.GRACE:
            self.grace_started_at = None
        if self.policy.limit > self.period_spent:
            self.exceeded = False
            self.grace_started_at = None  # spend is under the limit again: a new grace window later

    @event("BudgetRemoved", topic="meterline.BudgetRemoved")
    def _budget_removed(self, at: datetime) -> None:
        self.policy = None
        self.exceeded = False
        self.grace_started_at = None

    @event("SpendAccrued", topic="meterline.SpendAccrued")
    def _spend_accrued(self, amount: int, requests: int, day: str, at: datetime,
                       request_ids: list[str]) -> None:
        self.daily[day] = self.daily.get(day, 0) + amount
        self.total_spent += amount
        oldest = (date.fromisoformat(day) - timedelta(days=DAYS_KEPT)).isoformat()
        for stale in [d for d in self.daily if d < oldest]:
            del self.daily[stale]

    @event("ThresholdCrossed", topic="meterline.BudgetThresholdCrossed")
    def _threshold_crossed(self, percent: int, spent: int, limit: int, at: datetime) -> None:
        self.crossed.add(percent)

    @event("Exceeded", topic="meterline.BudgetExceeded")
    def _exceeded(self, spent: int, limit: int, at: datetime) -> None:
        self.exceeded = True

    @event("GracePeriodStarted", topic="meterline.GracePeriodStarted")
    def _grace_started(self, at: datetime, ends_at: datetime | None) -> None:
        self.grace_started_at = at

    @event("QuotaBlocked", topic="meterline.QuotaBlocked")
    def _blocked(self, reason: str, at: datetime) -> None:
        self.blocked = True

    @event("QuotaRestored", topic="meterline.QuotaRestored")
    def _restored(self, reason: str, at: datetime) -> None:
        self.blocked = False

    @event("PeriodRolledOver", topic="meterline.BudgetPeriodRolledOver")
    def _rolled_over(self, previous_start: datetime, new_start: datetime, previous_spent: int,
                     at: datetime) -> None:
        self.period_start = new_start
        self.crossed = set()
        self.exceeded = False
        self.grace_started_at = None


def _same(a: BudgetPolicy, b: BudgetPolicy) -> bool:
    return (a.limit, a.period, a.mode, a.grace_percent, a.grace_hours) == (
        b.limit, b.period, b.mode, b.grace_percent, b.grace_hours)


def local_day(at: datetime, tz: str) -> str:
    """The ISO date of `at` in the billing time zone: the bucket its spend falls in."""
    return require_aware(at).astimezone(ZoneInfo(tz)).date().isoformat()
