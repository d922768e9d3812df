"""Customer pricing of jobs (domain/job_pricing.py) and a job's totals (domain/jobs.py): exact
integer nano-units, markup rounded half-even once per job, tiers at their bounds, and rules
refused with the field named."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.job_pricing import Flat, Markup, Tiered, rule_from_api, rule_of
from domain.jobs import Job, JobStatus
from domain.money import from_nanos

AT = datetime(2026, 12, 1, tzinfo=UTC)
SEED_TIERS = {"strategy": "tiered", "tiers": [{"below_tokens": 1000, "price_usd": "0.05"},
                                              {"below_tokens": 5000, "price_usd": "0.15"},
                                              {"price_usd": "0.30"}]}


def new_job() -> Job:
    return Job(job_id=uuid4(), team_id="t", user_id="u", job_type="doc", metadata={}, at=AT)


@given(st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=2_000))
def test_a_job_s_total_is_the_exact_sum_of_many_tiny_call_costs(costs: list[int]) -> None:
    job = new_job()
    for n, cost in enumerate(costs):
        job.record_call(f"f{n}", cost, 1, 1, AT)
    assert job.cost == sum(costs)
    # the API's decimal string is that sum exactly: no binary-float drift
    assert from_nanos(job.cost) == sum((Decimal(c) / 10**9 for c in costs), Decimal(0))
    assert sum(c.cost for c in job.breakdown()) == job.cost


@given(cost=st.integers(min_value=0, max_value=10**15),
       factor=st.decimals(min_value=0, max_value=100, places=6, allow_nan=False))
def test_markup_is_the_cost_times_the_factor_rounded_half_even_to_a_nano_unit_once(
        cost: int, factor: Decimal) -> None:
    price = Markup(str(factor)).price_of(cost, 0)
    exact = Decimal(cost) * factor  # in nano-units; Decimal's context is wide enough here
    assert price == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_markup_ties_go_to_the_even_nano_unit() -> None:
    assert Markup("1.5").price_of(1, 0) == 2   # 1.5 -> 2
    assert Markup("1.5").price_of(3, 0) == 4   # 4.5 -> 4
    assert Markup("0.5").price_of(5, 0) == 2   # 2.5 -> 2


@given(st.lists(st.integers(min_value=0, max_value=999), min_size=1, max_size=500))
def test_markup_on_a_job_is_rounded_once_not_per_call(costs: list[int]) -> None:
    """Per-call rounding of 1.5 x 1 nano-unit would give 2 each; the job's price is 1.5 x total."""
    total = sum(costs)
    assert Markup("1.5").price_of(total, 0) == int(
        (Decimal(total) * Decimal("1.5")).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize(("tokens", "price"), [(0, "0.05"), (999, "0.05"), (1000, "0.15"),
                                               (4999, "0.15"), (5000, "0.30"), (10**9, "0.30")])
def test_seed_tiers_price_a_job_by_its_total_tokens_at_their_bounds(tokens: int, price: str) -> None:
    rule = rule_from_api(SEED_TIERS, "rule")
    assert from_nanos(rule.price_of(123, tokens)) == Decimal(price)


def test_rules_round_trip_through_their_stored_form() -> None:
    for rule in (Flat(500_000_000), Markup("1.5"), rule_from_api(SEED_TIERS, "r")):
        assert rule_of(rule.as_dict()) == rule
    assert isinstance(rule_of(SEED_TIERS | {"tiers": [{"below_tokens": None, "price": 1}]}), Tiered)


@pytest.mark.parametrize(("body", "named"), [
    ({"strategy": "cheap"}, "strategy"), ({"strategy": "flat"}, "price_usd"),
    ({"strategy": "flat", "price_usd": 0.5}, "price_usd"),
    ({"strategy": "flat", "price_usd": "-1"}, "price_usd"),
    ({"strategy": "flat", "price_usd": "0.0000000001"}, "price_usd"),
    ({"strategy": "markup", "factor": "many"}, "factor"), ({"strategy": "markup", "factor": "-1"}, "factor"),
    ({"strategy": "markup", "factor": "1e9"}, "factor"), ({"strategy": "markup", "factor": "NaN"}, "factor"),
    ({"strategy": "tiered", "tiers": []}, "tiers"),
    ({"strategy": "tiered", "tiers": [{"below_tokens": 10, "price_usd": "1"}]}, "last tier"),
    ({"strategy": "tiered", "tiers": [{"below_tokens": 10, "price_usd": "1"},
                                      {"below_tokens": 5, "price_usd": "1"}, {"price_usd": "1"}]}, "ascend"),
    ({"strategy": "flat", "price_usd": "1", "factor": "2"}, "factor"), ("flat", "strategy"),
])
def test_a_bad_rule_is_refused_naming_the_field(body: object, named: str) -> None:
    with pytest.raises(DomainError, match=named):
        rule_from_api(body, "rule")


def test_a_job_completes_once_with_its_price_and_the_rule_that_priced_it() -> None:
    job = new_job()
    job.record_call("a", 1_000, 10, 5, AT)
    job.complete(JobStatus.COMPLETED, None, {}, AT, customer_price=500_000_000,
                 pricing={"strategy": "flat", "price": 500_000_000, "version": 1})
    assert (job.customer_price, job.completed_at, job.status) == (500_000_000, AT, JobStatus.COMPLETED)
    with pytest.raises(DomainError, match="completes once"):
        job.complete(JobStatus.FAILED, "late", {}, AT)


def test_a_stream_metered_in_parts_is_one_call_in_the_breakdown() -> None:
    job = new_job()
    job.record_call("part-1", 100, 10, 4, AT, call_id="req-1", model="sim", purpose="p", latency_ms=5)
    job.record_call("part-2", 50, 0, 2, AT, calls=0, call_id="req-1", model="sim", latency_ms=9)
    job.record_call("part-2", 50, 0, 2, AT, calls=0, call_id="req-1")  # redelivered: ignored
    [call] = job.breakdown()
    assert (call.call_id, call.cost, call.prompt_tokens, call.completion_tokens, call.latency_ms) == (
        "req-1", 150, 10, 6, 9)
    assert job.calls == 1 and job.cost == 150
