"""Percentages of money for reports, exact at any size.

`Decimal(a) / Decimal(b)` rounds to the context's 28 digits and `quantize` then raises once the
quotient has more (a price book or GPU cost in the billions against a nano-dollar of usage), so
the percentage is worked out in integers and only written as a Decimal.
"""

from __future__ import annotations

from decimal import Decimal

from domain.money import divide_rounded


def percent(part: int, whole: int) -> Decimal | None:
    """`part` as a percent of `whole`, two decimals, rounded half to even; None when whole is 0."""
    if whole == 0:
        return None
    if whole < 0:
        part, whole = -part, -whole
    return Decimal(f"{divide_rounded(part * 10_000, whole)}E-2")
