"""Amounts in JSON answers are exact decimal strings at any size (gateway/api/deps.usd):
Decimal's normalize() rounded past 28 digits, so 10**30 + 1 nano-dollars read as 10**21 USD."""

from __future__ import annotations

from decimal import Decimal, localcontext

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.deps import usd


@given(st.integers(min_value=-(10**40), max_value=10**40))
def test_every_amount_reads_back_to_the_same_nano_dollar(nanos: int) -> None:
    text = usd(nanos)
    with localcontext() as exact:
        exact.prec = 100  # the check itself must not round
        assert Decimal(text) * 10**9 == nanos
    assert "E" not in text and (text == "0" or not text.endswith(("0", ".")) or "." not in text)


def test_amounts_past_28_digits_are_not_rounded() -> None:
    assert usd(10**30 + 1) == "1000000000000000000000.000000001"
    assert usd(1_500_000_000) == "1.5" and usd(0) == "0" and usd(10**11) == "100"
