"""Money is exact: integer nano-units, one half-to-even rounding per request, no floats."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.money import NANOS_PER_UNIT, MoneyError, divide_rounded, from_nanos, to_nanos
from domain.pricing import Price, Usage

# Prices per million tokens from free to $100 000, token counts up to 100 M per request.
price_amounts = st.integers(min_value=0, max_value=100_000 * NANOS_PER_UNIT)
token_counts = st.integers(min_value=0, max_value=100_000_000)


@st.composite
def prices(draw: st.DrawFn) -> Price:
    return Price(model="m", version=1, effective_from=datetime(2025, 1, 1, tzinfo=UTC),
                 input_per_million=draw(price_amounts), output_per_million=draw(price_amounts),
                 cached_input_per_million=draw(st.none() | price_amounts))


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt = draw(token_counts)
    return Usage(prompt_tokens=prompt, completion_tokens=draw(token_counts),
                 cached_tokens=draw(st.integers(min_value=0, max_value=prompt)))


def exact_cost(price: Price, usage: Usage) -> int:
    """The specification: the exact rational cost, rounded half to even once."""
    cached_price = price.input_per_million if price.cached_input_per_million is None \
        else price.cached_input_per_million
    exact = (Fraction(usage.prompt_tokens - usage.cached_tokens, 1_000_000) * price.input_per_million
             + Fraction(usage.cached_tokens, 1_000_000) * cached_price
             + Fraction(usage.completion_tokens, 1_000_000) * price.output_per_million)
    return round(exact)  # round() of a Fraction is half to even


@given(prices(), usages())
def test_cost_is_the_exact_rational_cost_rounded_half_to_even(price: Price, usage: Usage) -> None:
    cost = price.cost(usage)
    assert type(cost) is int
    assert cost == exact_cost(price, usage)


@given(st.integers(min_value=-10**30, max_value=10**30), st.integers(min_value=1, max_value=10**12))
def test_divide_rounded_matches_rounding_the_exact_fraction(numerator: int, denominator: int) -> None:
    assert divide_rounded(numerator, denominator) == round(Fraction(numerator, denominator))


def test_ties_round_to_even() -> None:
    assert [divide_rounded(n, 2) for n in (1, 3, 5, -1, -3)] == [0, 2, 2, 0, -2]


@given(prices(), usages(), st.data())
def test_worst_case_cost_covers_any_usage_within_it(price: Price, worst: Usage, data: st.DataObject) -> None:
    reserved = price.worst_case_cost(worst.prompt_tokens, worst.completion_tokens)
    actual = data.draw(st.builds(
        Usage, prompt_tokens=st.just(worst.prompt_tokens),
        completion_tokens=st.integers(min_value=0, max_value=worst.completion_tokens),
        cached_tokens=st.integers(min_value=0, max_value=worst.prompt_tokens)))
    assert type(reserved) is int
    assert reserved >= price.cost(actual)
    assert reserved >= exact_cost(price, worst)  # rounded up, never down


@given(st.decimals(places=9, allow_nan=False, allow_infinity=False))
def test_decimals_with_up_to_nine_places_round_trip(amount: Decimal) -> None:
    nanos = to_nanos(amount)
    assert type(nanos) is int
    assert Fraction(nanos, NANOS_PER_UNIT) == Fraction(amount)
    assert from_nanos(nanos) == amount
    assert to_nanos(str(amount)) == nanos


@given(st.integers(min_value=-10**40, max_value=10**40))
def test_nanos_round_trip_through_decimal(nanos: int) -> None:
    amount = from_nanos(nanos)
    assert isinstance(amount, Decimal)
    assert to_nanos(amount) == nanos
    assert to_nanos(str(amount)) == nanos


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_refused(amount: float) -> None:
    with pytest.raises(MoneyError, match="float"):
        to_nanos(amount)


@given(st.integers(min_value=-10**30, max_value=10**30), st.integers(min_value=1, max_value=9),
       st.integers(min_value=10, max_value=40))
def test_sub_nano_precision_is_refused(nanos: int, extra: int, place: int) -> None:
    whole, fraction = divmod(abs(nanos), NANOS_PER_UNIT)
    text = f"{'-' if nanos < 0 else ''}{whole}.{fraction:09d}{'0' * (place - 10)}{extra}"
    for amount in (text, Decimal(text)):
        with pytest.raises(MoneyError, match="precision"):
            to_nanos(amount)


@pytest.mark.parametrize("amount", ["abc", "", "1,5", True, "NaN", "Infinity", "-inf", "1e99999999"])
def test_non_amounts_are_refused(amount: object) -> None:
    with pytest.raises(MoneyError):
        to_nanos(amount)  # type: ignore[arg-type]


def test_a_tiny_amount_with_a_huge_exponent_is_refused_cheaply() -> None:
    with pytest.raises(MoneyError, match="precision"):
        to_nanos("1e-999999999")
    assert to_nanos("0E-999999999") == 0
