"""The pure quota decision: may a request holding `request` nano-units of reservation go ahead?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import DomainError
from domain.money import percent_of, usd_text
from domain.periods import Period

THRESHOLDS = (80, 95, 100)


class Mode(StrEnum):
    SOFT = "soft"    # never blocks, raises events
    HARD = "hard"    # blocks at 100 %
    GRACE = "grace"  # blocks past 100 % + grace allowance (and, optionally, after a grace window)


class Scope(StrEnum):
    KEY = "key"
    USER = "user"
    TEAM = "team"


class Verdict(StrEnum):
    ALLOW = "allow"
    WARN = "warn"      # allowed, but the request takes spend past the limit
    REFUSE = "refuse"


@dataclass(frozen=True)
class BudgetPolicy:
    limit: int  # nano-units per period
    period: Period = Period.MONTH
    mode: Mode = Mode.HARD
    grace_percent: int = 10
    grace_hours: int | None = None
    version: int = 1

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise DomainError(f"limit must not be negative, got {self.limit}")
        if not 0 <= self.grace_percent <= 1000:
            raise DomainError(f"grace_percent must be within 0..1000, got {self.grace_percent}")
        if self.grace_hours is not None and self.grace_hours <= 0:
            raise DomainError(f"grace_hours must be positive, got {self.grace_hours}")

    @property
    def cap(self) -> int | None:
        """The most settled spend the policy ever allows in a period (None: unbounded)."""
        if self.mode is Mode.SOFT:
            return None
        if self.mode is Mode.HARD:
            return self.limit
        return self.limit + percent_of(self.limit, self.grace_percent)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    scope: Scope | None = None
    scope_id: str | None = None
    limit: int | None = None
    cap: int | None = None
    spent: int = 0
    reserved: int = 0
    requested: int = 0
    mode: Mode | None = None
    policy_version: int | None = None
    reason: str = ""
    # Refused only because of what other requests hold reserved: spent plus this request's
    # own worst case fits, so the answer may change once those requests settle.
    waits_on_reserved: bool = False
    # On a refusal, every scope's decision (the guard fills it in), so the refusal's record
    # can name each scope checked, not only the deciding one.
    checked: tuple[Decision, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.REFUSE


def decide(policy: BudgetPolicy, *, scope: Scope, scope_id: str, spent: int, reserved: int,
           requested: int, now: datetime, grace_started_at: datetime | None = None) -> Decision:
    """Allow, warn or refuse a reservation of `requested` against one scope's budget."""
    projected = spent + reserved + requested
    facts = dict(scope=scope, scope_id=scope_id, limit=policy.limit, cap=policy.cap, spent=spent,
                 reserved=reserved, requested=requested, mode=policy.mode,
                 policy_version=policy.version)
    window_over = (policy.mode is Mode.GRACE and policy.grace_hours is not None
                   and grace_started_at is not None
                   and now >= grace_started_at + timedelta(hours=policy.grace_hours))
    if window_over and projected > policy.limit:
        return Decision(Verdict.REFUSE, **facts, waits_on_reserved=spent + requested <= policy.limit,
                        reason=(
            f"{scope} {scope_id}: the {policy.grace_hours} h grace window that began "
            f"{grace_started_at.isoformat()} is over and the budget of "
            f"${usd_text(policy.limit)} is spent"))
    cap = policy.cap
    if cap is not None and projected > cap:
        allowance = "" if policy.mode is Mode.HARD else f" plus {policy.grace_percent}% grace"
        return Decision(Verdict.REFUSE, **facts, waits_on_reserved=spent + requested <= cap,
                        reason=(
            f"{scope} {scope_id} budget of ${usd_text(policy.limit)}{allowance} per "
            f"{policy.period} would be exceeded: spent ${usd_text(spent)}, reserved "
            f"${usd_text(reserved)}, this request up to ${usd_text(requested)}"))
    if projected > policy.limit:
        return Decision(Verdict.WARN, **facts, reason=(
            f"{scope} {scope_id} is past its ${usd_text(policy.limit)} budget ({policy.mode})"))
    return Decision(Verdict.ALLOW, **facts)


_SEVERITY = {Verdict.REFUSE: 0, Verdict.WARN: 1, Verdict.ALLOW: 2}
_ALLOWED = Decision(Verdict.ALLOW)  # no scope has a policy: nothing to decide


def strictest(decisions: list[Decision]) -> Decision:
    """The deciding verdict across every scope a request falls under."""
    if not decisions:
        return _ALLOWED
    return min(decisions, key=lambda d: _SEVERITY[d.verdict])


def thresholds_reached(spent: int, limit: int) -> tuple[int, ...]:
    """Which of the 80/95/100 % thresholds `spent` has reached; nothing spent reaches none."""
    return tuple(p for p in THRESHOLDS if spent > 0 and spent * 100 >= limit * p)
