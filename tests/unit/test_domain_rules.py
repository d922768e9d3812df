"""The domain's rules, one example each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.budget import Budget, local_day
from domain.errors import DomainError, KeyNotUsableError
from domain.jobs import Job, JobStatus
from domain.keys import ApiKey
from domain.periods import Period
from domain.pricing import Price, PriceBook, Usage
from domain.quota_policy import BudgetPolicy, Mode, Scope, Verdict, decide
from domain.usage import billed_cost

T0 = datetime(2025, 3, 10, 9, tzinfo=UTC)


def new_key(at: datetime = T0) -> ApiKey:
    return ApiKey(key_id=uuid4(), user_id="u1", team_id="t1", name="laptop", description="",
                  models=["*"], prefix="sk-ml-abcd", secret_hmac="hmac-1", expires_at=None,
                  rpm_limit=None, tpm_limit=None, at=at)


def accepts(key: ApiKey, secret_hmac: str, at: datetime) -> bool:
    """How the gateway checks a presented key against the key's state."""
    if not key.usable_at(at):
        return False
    return secret_hmac == key.secret_hmac or (
        secret_hmac == key.previous_hmac and key.previous_valid_until is not None
        and at < key.previous_valid_until)


def new_budget(policy: BudgetPolicy, at: datetime = T0, tz: str = "UTC") -> Budget:
    budget = Budget(scope=Scope.KEY, scope_id="k1", tz=tz, at=at)
    budget.set_policy(policy, at)
    budget.collect_events()
    return budget


def spend(budget: Budget, amount: int, at: datetime) -> list[str]:
    """Accrues settled spend and returns the names of the events it raised."""
    budget.accrue(amount, 1, local_day(at, budget.tz), at, [str(uuid4())])
    return [type(e).__name__ for e in budget.collect_events()]


def verdict(budget: Budget, requested: int, at: datetime) -> Verdict:
    return decide(budget.policy, scope=budget.scope, scope_id=budget.scope_id,
                  spent=budget.period_spent, reserved=0, requested=requested, now=at,
                  grace_started_at=budget.grace_started_at).verdict


# ----- keys ----------------------------------------------------------------------------------


def test_a_rotated_key_accepts_the_old_secret_until_the_grace_ends() -> None:
    key = new_key()
    key.rotate("sk-ml-wxyz", "hmac-2", T0, grace_seconds=300)

    assert accepts(key, "hmac-2", T0) and accepts(key, "hmac-1", T0 + timedelta(seconds=299))
    assert not accepts(key, "hmac-1", T0 + timedelta(seconds=300))
    assert accepts(key, "hmac-2", T0 + timedelta(days=30))


def test_a_rotation_without_grace_ends_the_old_secret_at_once() -> None:
    key = new_key()
    key.rotate("sk-ml-wxyz", "hmac-2", T0, grace_seconds=300)
    key.rotate("sk-ml-qrst", "hmac-3", T0 + timedelta(seconds=10))

    assert not accepts(key, "hmac-1", T0 + timedelta(seconds=11))
    assert not accepts(key, "hmac-2", T0 + timedelta(seconds=11))
    assert key.previous_hmac is None


def test_a_revoked_key_cannot_be_rotated() -> None:
    key = new_key()
    key.revoke("leaked", T0)

    with pytest.raises(KeyNotUsableError, match="revoked; issue a new key"):
        key.rotate("sk-ml-wxyz", "hmac-2", T0 + timedelta(minutes=1))
    assert not accepts(key, "hmac-1", T0 + timedelta(minutes=1))


def test_revoking_a_key_in_its_grace_window_ends_the_old_secret_too() -> None:
    key = new_key()
    key.rotate("sk-ml-wxyz", "hmac-2", T0, grace_seconds=300)
    key.revoke("leaked", T0 + timedelta(seconds=5))

    assert not accepts(key, "hmac-1", T0 + timedelta(seconds=6))


# ----- jobs ----------------------------------------------------------------------------------


def test_a_job_completes_once() -> None:
    job = Job(job_id=uuid4(), team_id="t1", user_id="u1", job_type="report", metadata={}, at=T0)
    job.record_call("r1", 500, 10, 5, T0)
    job.record_call("r1", 500, 10, 5, T0)  # a redelivered call
    job.complete(JobStatus.COMPLETED, None, {}, T0)

    with pytest.raises(DomainError, match="completes once"):
        job.complete(JobStatus.FAILED, "late failure", {}, T0)
    assert (job.status, job.calls, job.cost) == (JobStatus.COMPLETED, 1, 500)


def test_a_job_cannot_complete_as_running() -> None:
    job = Job(job_id=uuid4(), team_id=None, user_id="u1", job_type="report", metadata={}, at=T0)
    with pytest.raises(DomainError, match="'completed' or 'failed'"):
        job.complete(JobStatus.RUNNING, None, {}, T0)


# ----- budgets -------------------------------------------------------------------------------


def test_thresholds_fire_once_per_period_and_again_after_a_rollover() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, mode=Mode.SOFT))
    raised = [spend(budget, amount, T0) for amount in (500, 300, 100, 50, 50, 200)]

    assert [[n for n in names if n != "SpendAccrued"] for names in raised] == [
        [], ["ThresholdCrossed"], [], ["ThresholdCrossed"], ["ThresholdCrossed", "Exceeded"], []]
    assert budget.crossed == {80, 95, 100}

    next_month = datetime(2025, 4, 1, tzinfo=UTC)
    assert spend(budget, 1_000, next_month) == [
        "PeriodRolledOver", "SpendAccrued", "ThresholdCrossed", "ThresholdCrossed",
        "ThresholdCrossed", "Exceeded"]


def test_a_grace_budget_with_grace_hours_blocks_when_the_window_ends() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, mode=Mode.GRACE, grace_percent=10,
                                     grace_hours=2))
    assert "GracePeriodStarted" in spend(budget, 1_000, T0)
    assert not budget.blocked and verdict(budget, 50, T0 + timedelta(hours=1)) is Verdict.WARN

    budget.observe(T0 + timedelta(hours=1, minutes=59))
    assert not budget.blocked
    budget.observe(T0 + timedelta(hours=2))
    assert budget.blocked
    assert verdict(budget, 1, T0 + timedelta(hours=2)) is Verdict.REFUSE


def test_a_grace_budget_blocks_past_the_grace_allowance() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, mode=Mode.GRACE, grace_percent=10))
    spend(budget, 1_050, T0)
    assert verdict(budget, 50, T0) is Verdict.WARN and verdict(budget, 51, T0) is Verdict.REFUSE
    assert "QuotaBlocked" in spend(budget, 50, T0)


def test_raising_the_limit_restores_a_blocked_quota() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, mode=Mode.HARD))
    assert "QuotaBlocked" in spend(budget, 1_000, T0)

    budget.set_policy(BudgetPolicy(limit=2_000, mode=Mode.HARD), T0)
    assert "QuotaRestored" in [type(e).__name__ for e in budget.collect_events()]
    assert not budget.blocked and verdict(budget, 1_000, T0) is Verdict.ALLOW


def test_raising_the_limit_restores_a_quota_whose_grace_window_ran_out() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, mode=Mode.GRACE, grace_hours=1))
    spend(budget, 1_000, T0)
    budget.observe(T0 + timedelta(hours=1))
    assert budget.blocked

    later = T0 + timedelta(hours=3)
    budget.set_policy(BudgetPolicy(limit=5_000, mode=Mode.GRACE, grace_hours=1), later)
    assert not budget.blocked and verdict(budget, 100, later) is Verdict.ALLOW
    # Passing the new limit opens a new grace window, not the one that ran out.
    assert "GracePeriodStarted" in spend(budget, 4_000, later)
    assert not budget.blocked and verdict(budget, 100, later) is Verdict.WARN


def test_a_soft_budget_never_refuses() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, mode=Mode.SOFT))
    spend(budget, 50_000, T0)
    assert not budget.blocked and verdict(budget, 10**12, T0) is Verdict.WARN


def test_a_monthly_budget_counts_the_days_spent_under_a_daily_one() -> None:
    budget = new_budget(BudgetPolicy(limit=1_000, period=Period.DAY))
    spend(budget, 600, T0)
    spend(budget, 300, T0 + timedelta(days=1))
    assert budget.period_spent == 300

    budget.set_policy(BudgetPolicy(limit=1_000, period=Period.MONTH), T0 + timedelta(days=1))
    assert budget.period_spent == 900
    assert verdict(budget, 101, T0 + timedelta(days=1)) is Verdict.REFUSE


def test_a_budget_without_a_period_counts_all_spend() -> None:
    budget = new_budget(BudgetPolicy(limit=10_000, period=Period.MONTH))
    for month in range(5):
        spend(budget, 1_000, T0 + timedelta(days=31 * month))
    budget.set_policy(BudgetPolicy(limit=10_000, period=Period.NONE), T0 + timedelta(days=130))
    assert budget.period_spent == budget.total_spent == 5_000


# ----- prices --------------------------------------------------------------------------------


def test_the_price_in_force_is_chosen_by_effective_date() -> None:
    book = PriceBook(model="llama")
    book.set_price(effective_from=T0, input_per_million=100, output_per_million=200)
    book.set_price(effective_from=T0 + timedelta(days=30), input_per_million=300,
                   output_per_million=600)
    book.set_price(effective_from=T0 + timedelta(days=10), input_per_million=200,
                   output_per_million=400)

    assert [book.price_at(T0 + timedelta(days=d)).version for d in (0, 9, 10, 29, 30)] == [
        1, 1, 3, 3, 2]
    with pytest.raises(DomainError, match="no price in force"):
        book.price_at(T0 - timedelta(seconds=1))


def test_a_repeated_price_command_records_no_new_version() -> None:
    book = PriceBook(model="llama")
    for _ in range(2):
        book.set_price(effective_from=T0, input_per_million=100, output_per_million=200)
        book.set_price(effective_from=T0 + timedelta(days=30), input_per_million=300,
                       output_per_million=600)
    assert len(book.prices) == 2


def test_failed_requests_are_free_unless_the_price_bills_them() -> None:
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    free = Price("llama", 1, T0, input_per_million=100, output_per_million=200)
    billed = Price("llama", 2, T0, input_per_million=100, output_per_million=200,
                   bill_failed_requests=True)

    assert [billed_cost(free, usage, status) for status in (200, 299, 400, 500, 499)] == [
        300, 300, 0, 0, 0]
    assert [billed_cost(billed, usage, status) for status in (200, 500)] == [300, 300]


def test_cached_tokens_are_billed_at_the_cached_price() -> None:
    price = Price("llama", 1, T0, input_per_million=1_000, output_per_million=0,
                  cached_input_per_million=100)
    assert price.cost(Usage(prompt_tokens=1_000_000, completion_tokens=0,
                            cached_tokens=400_000)) == 600 + 40


def test_random_ids_are_version_4_uuids_in_canonical_text_and_never_repeat() -> None:
    from uuid import RFC_4122, UUID

    from domain.ids import random_id
    ids = [random_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:1000]:
        parsed = UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == RFC_4122
