"""Customer pricing of jobs: what a SaaS team charges its customer for one job, beside what
the job cost. Three strategies (seed 002's): a flat price per job, a price by the job's total
tokens in tiers, and a markup on the actual cost.

Rounding (markup): price = round_half_even(cost x factor) in nano-units, exactly (the factor is
a decimal, taken as a fraction), once per job on the job's total cost; a flat or tiered price
is an exact decimal amount. Margin = price - cost, negative when the job cost more.

A rule travels in events as the dict `as_dict` gives and `rule_of` reads, amounts as integer
nano-units; the API's bodies (USD as decimal strings) are read by `rule_from_api`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from domain.errors import DomainError
from domain.money import MAX_PRICE, NANOS_PER_UNIT, MoneyError, divide_rounded, to_nanos

MAX_TIERS = 32
MAX_FACTOR = Fraction(1000)
MAX_FACTOR_DIGITS = 32
FACTOR = re.compile(rf"(?=.{{1,{MAX_FACTOR_DIGITS}}}$)[0-9]+(\.[0-9]+)?", re.ASCII)


@dataclass(frozen=True)
class Flat:
    price: int

    def price_of(self, cost: int, tokens: int) -> int:
        return self.price

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": "flat", "price": self.price}


@dataclass(frozen=True)
class Tier:
    below_tokens: int | None  # None: the last tier, every count above the ones before
    price: int


@dataclass(frozen=True)
class Tiered:
    tiers: tuple[Tier, ...]

    def price_of(self, cost: int, tokens: int) -> int:
        for tier in self.tiers:
            if tier.below_tokens is None or tokens < tier.below_tokens:
                return tier.price
        raise AssertionError("the last tier has no bound")  # rule_of refuses such a rule

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": "tiered", "tiers": [
            {"below_tokens": t.below_tokens, "price": t.price} for t in self.tiers]}


@dataclass(frozen=True)
class Markup:
    factor: str  # a decimal string ("1.5"): kept as given, read exactly

    def price_of(self, cost: int, tokens: int) -> int:
        ratio = Fraction(Decimal(self.factor))
        return divide_rounded(cost * ratio.numerator, ratio.denominator)

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": "markup", "factor": self.factor}


Rule = Flat | Tiered | Markup


def rule_of(data: dict[str, Any]) -> Rule:
    """A rule from its stored dict (amounts in nano-units)."""
    strategy = data["strategy"]
    if strategy == "flat":
        return Flat(int(data["price"]))
    if strategy == "tiered":
        return Tiered(tuple(Tier(t["below_tokens"], int(t["price"])) for t in data["tiers"]))
    return Markup(str(data["factor"]))


def rule_from_api(body: Any, where: str) -> Rule:
    """A rule from an API body (USD as decimal strings); DomainError names what is wrong."""
    if not isinstance(body, dict):
        raise DomainError(f"{where} must be an object with a 'strategy': flat, tiered or markup")
    strategy = body.get("strategy")
    if not isinstance(strategy, str):  # a list or an object cannot be looked up below
        raise DomainError(f"{where}.strategy must be 'flat', 'tiered' or 'markup', got {str(strategy)[:40]}")
    allowed = {"flat": {"strategy", "price_usd"}, "tiered": {"strategy", "tiers"},
               "markup": {"strategy", "factor"}}.get(strategy)
    if allowed is None:
        raise DomainError(f"{where}.strategy must be 'flat', 'tiered' or 'markup', got {strategy!r}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise DomainError(f"{where} has fields a {strategy} rule does not take: {', '.join(unknown)}")
    if strategy == "flat":
        return Flat(_usd(body.get("price_usd"), f"{where}.price_usd"))
    if strategy == "markup":
        return Markup(_factor(body.get("factor"), f"{where}.factor"))
    return Tiered(_tiers(body.get("tiers"), f"{where}.tiers"))


def rule_to_api(rule: Rule, usd: Any) -> dict[str, Any]:
    """The rule as the API shows it; `usd` writes nano-units as a decimal string."""
    if isinstance(rule, Flat):
        return {"strategy": "flat", "price_usd": usd(rule.price)}
    if isinstance(rule, Markup):
        return {"strategy": "markup", "factor": rule.factor}
    return {"strategy": "tiered", "tiers": [
        {"below_tokens": t.below_tokens, "price_usd": usd(t.price)} if t.below_tokens is not None
        else {"price_usd": usd(t.price)} for t in rule.tiers]}


def _usd(value: Any, where: str) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise DomainError(f"{where} must be a decimal string in USD, e.g. \"0.50\"")
    try:
        nanos = to_nanos(str(value))
    except MoneyError as exc:
        raise DomainError(f"{where}: {exc}") from None
    if not 0 <= nanos <= MAX_PRICE:
        raise DomainError(f"{where} must be from 0 to {MAX_PRICE // NANOS_PER_UNIT:,} USD")
    return nanos


def _factor(value: Any, where: str) -> str:
    """Plain decimal digits only: an exponent ("1e-999999999") would make the exact fraction a
    number of a billion digits, and spaces or underscores ("1_000") are not what was meant."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise DomainError(f"{where} must be a decimal string such as \"1.5\" (150 % of the cost)")
    text = str(value)
    if not FACTOR.fullmatch(text):
        raise DomainError(f"{where} must be a decimal such as \"1.5\" (digits and a point, at most "
                          f"{MAX_FACTOR_DIGITS} characters, no exponent), got {text[:40]!r}")
    if Fraction(Decimal(text)) > MAX_FACTOR:
        raise DomainError(f"{where} must be a decimal from 0 to {MAX_FACTOR}, got {text!r}")
    return text


def _tiers(value: Any, where: str) -> tuple[Tier, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TIERS:
        raise DomainError(f"{where} must be a list of 1 to {MAX_TIERS} tiers like "
                          "{\"below_tokens\": 1000, \"price_usd\": \"0.05\"}, the last without below_tokens")
    tiers, previous = [], 0
    for n, item in enumerate(value):
        at = f"{where}[{n}]"
        if not isinstance(item, dict) or set(item) - {"below_tokens", "price_usd"}:
            raise DomainError(f"{at} must be {{\"below_tokens\": <int>, \"price_usd\": \"<usd>\"}}")
        bound = item.get("below_tokens")
        last = n == len(value) - 1
        if last and bound is not None:
            raise DomainError(f"{at} is the last tier: it has no below_tokens (it prices every "
                              "larger job)")
        if not last and (not isinstance(bound, int) or isinstance(bound, bool) or bound <= previous):
            raise DomainError(f"{at}.below_tokens must be an integer above {previous} "
                              "(tiers ascend)")
        tiers.append(Tier(bound, _usd(item.get("price_usd"), f"{at}.price_usd")))
        previous = bound or previous
    return tuple(tiers)
