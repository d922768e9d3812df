"""The price book a re-rating applies, from what an owner writes.

    flat:0.01/1k                        every token, input and output, at $0.01 per 1,000
    flat:0.50/1m                        ... or per million
    v2                                  each model's stored price version 2
    at:2026-03-01T00:00:00Z             each model's stored price in force at that instant
    granite-8b=0.10/0.20;llama=1/2/0.5  per model: USD per million input / output [/ cached input];
                                        models not named keep their actual cost

Amounts are decimal USD, exact to the nano-dollar per token unit; nothing here is a float.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from domain.money import MoneyError, to_nanos
from domain.pricing import Price

SPEC_HELP = ("give flat:0.01/1k, flat:0.50/1m, v2, at:2026-03-01T00:00:00Z, or per model "
             "name=INPUT/OUTPUT[/CACHED] in USD per million tokens, separated by ';'")
MAX_SPEC = 2_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PriceBookError(ValueError):
    """A price book that cannot be read or applied; its message says what to write instead."""


@dataclass(frozen=True)
class PriceBookSpec:
    """How to price each model: `price_for(model)` gives the Price, or None to keep actual cost."""

    label: str
    price_for: Callable[[str], Price | None]
    named: frozenset[str] = frozenset()  # the models a per-model book names
    catalogue: frozenset[str] = frozenset()  # the models with stored prices

    def unknown(self, used: Iterable[str]) -> list[str]:
        """Models the book names that neither had usage (`used`) nor are in the catalogue: typos,
        which would otherwise re-rate nothing and show no difference."""
        return sorted(self.named - set(used) - self.catalogue)


def parse_price_book(spec: str, stored: Sequence[Price]) -> PriceBookSpec:
    text = (spec or "").strip()
    if not text or len(text) > MAX_SPEC:
        raise PriceBookError(f"price_book {spec[:40]!r}… is empty or too long; {SPEC_HELP}")
    if found := re.fullmatch(r"flat:([0-9.]+)/(1k|1m)", text, re.IGNORECASE):
        per_million = _usd(found[1], text) * (1000 if found[2].lower() == "1k" else 1)
        return PriceBookSpec(text, lambda model: _price(model, per_million, per_million, per_million))
    if found := re.fullmatch(r"v(\d{1,6})", text, re.IGNORECASE):
        version = int(found[1])
        books = _by_model(stored)
        return PriceBookSpec(text, lambda model: _version(books, model, version))
    if text.lower().startswith("at:"):
        try:
            at = datetime.fromisoformat(text[3:].replace("Z", "+00:00"))
        except ValueError:
            raise PriceBookError(f"price_book {text!r}: {text[3:]!r} is not an ISO instant; "
                                 f"{SPEC_HELP}") from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        books = _by_model(stored)
        return PriceBookSpec(text, lambda model: _in_force(books.get(model, []), at))
    prices = _per_model(text)
    return PriceBookSpec(text, prices.get, frozenset(prices), frozenset(p.model for p in stored))


def _per_model(text: str) -> dict[str, Price]:
    prices: dict[str, Price] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        found = re.fullmatch(r"([^=\s]{1,128})=([0-9.]+)/([0-9.]+)(?:/([0-9.]+))?", part)
        if not found:
            raise PriceBookError(f"price_book part {part[:60]!r} is not understood; {SPEC_HELP}")
        model = found[1]
        if model in prices:
            raise PriceBookError(f"price_book names {model!r} twice")
        cached = _usd(found[4], part) if found[4] else None
        prices[model] = _price(model, _usd(found[2], part), _usd(found[3], part), cached)
    if not prices:
        raise PriceBookError(f"price_book {text!r} names no model; {SPEC_HELP}")
    return prices


def _usd(text: str, where: str) -> int:
    try:
        return to_nanos(Decimal(text))
    except (MoneyError, InvalidOperation):
        raise PriceBookError(f"price_book {where!r}: {text!r} is not an amount in USD with at most "
                             "9 decimals") from None


def _price(model: str, input_nanos: int, output_nanos: int, cached_nanos: int | None) -> Price:
    return Price(model, 0, EPOCH, input_per_million=input_nanos, output_per_million=output_nanos,
                 cached_input_per_million=cached_nanos)


def _by_model(stored: Iterable[Price]) -> dict[str, list[Price]]:
    books: dict[str, list[Price]] = {}
    for price in stored:
        books.setdefault(price.model, []).append(price)
    return books


def _version(books: dict[str, list[Price]], model: str, version: int) -> Price:
    for price in books.get(model, []):
        if price.version == version:
            return price
    known = sorted(p.version for p in books.get(model, []))
    raise PriceBookError(f"model {model!r} has no price version {version} (it has {known or 'none'})")


def _in_force(prices: list[Price], at: datetime) -> Price | None:
    started = [p for p in prices if p.effective_from <= at]
    return max(started, key=lambda p: (p.effective_from, p.version)) if started else None
