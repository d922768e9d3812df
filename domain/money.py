"""Money as integers in nano-units of the currency (1 USD = 1 000 000 000 nano-USD).

Decimals appear only at the edges (configuration, API, reports); floats never.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

NANOS_PER_UNIT = 1_000_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are quoted per million tokens
MAX_DIGITS = 60  # far past any real amount; keeps the exact arithmetic on hostile input cheap
# The largest price or cap the APIs take, a trillion USD: past any real one, and every amount stays
# under 28 significant digits, the precision at which a Decimal is rounded when it is shown.
MAX_PRICE = 10**12 * NANOS_PER_UNIT


class MoneyError(ValueError):
    """An amount that cannot be represented exactly in nano-units."""


def to_nanos(amount: Decimal | str | int) -> int:
    """Converts a currency amount to nano-units, refusing floats and sub-nano precision."""
    if isinstance(amount, bool | float):
        raise MoneyError(f"amount {amount!r} must be a decimal string or integer, not a float")
    try:
        value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise MoneyError(f"amount {amount!r} is not a number") from None
    if not value.is_finite():
        raise MoneyError(f"amount {amount!r} is not finite")
    digits, exponent = value.as_tuple()[1:]
    if value and exponent + len(digits) < -9:  # every digit lies below one nano-unit
        raise MoneyError(f"amount {amount!r} has more precision than one nano-unit (1e-9)")
    if value and value.adjusted() >= MAX_DIGITS:
        raise MoneyError(f"amount {amount!r} is too large; at most {MAX_DIGITS} digits before the point")
    nanos = Fraction(value) * NANOS_PER_UNIT  # exact: Decimal arithmetic rounds past 28 digits
    if nanos.denominator != 1:
        raise MoneyError(f"amount {amount!r} has more precision than one nano-unit (1e-9)")
    return int(nanos)


def from_nanos(nanos: int) -> Decimal:
    """Converts nano-units to an exact Decimal currency amount."""
    return Decimal(f"{nanos:d}E-9")  # exact at any size, unlike scaleb under the context


def usd_text(nanos: int) -> str:
    """An amount for people: exact, without trailing zeros past the cents ("0.0012", "3.50")."""
    text = format(from_nanos(nanos), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"


def divide_rounded(numerator: int, denominator: int) -> int:
    """Integer division rounded to the nearest integer, ties to even (banker's rounding)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def percent_of(amount: int, percent: int) -> int:
    """`percent` % of an amount in nano-units, rounded down so caps never grow by rounding."""
    return amount * percent // 100


ROUNDING_RULE = (
    "cost = round_half_even((uncached_input x input_price + cached x cached_price"
    " + output x output_price) / 1e6) nano-units, rounded once per request"
)

__all__ = [
    "NANOS_PER_UNIT",
    "ROUNDING_RULE",
    "TOKENS_PER_PRICE_UNIT",
    "MoneyError",
    "divide_rounded",
    "from_nanos",
    "usd_text",
    "percent_of",
    "to_nanos",
]
