"""Effective-dated prices per million tokens and the exact cost of a usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, NoPriceError
from domain.ids import stable_id
from domain.money import TOKENS_PER_PRICE_UNIT, divide_rounded
from domain.periods import require_aware


@dataclass(frozen=True)
class Usage:
    """Token counts of one request. `cached_tokens` (read from a prompt cache) and
    `cache_write_tokens` (written to one, Anthropic's cache creation) are parts of
    `prompt_tokens`; `reasoning_tokens` is the part of `completion_tokens` spent thinking."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        if min(self.prompt_tokens, self.completion_tokens, self.cached_tokens,
               self.cache_write_tokens, self.reasoning_tokens) < 0:
            raise DomainError(f"token counts must not be negative: {self}")
        if self.cached_tokens + self.cache_write_tokens > self.prompt_tokens:
            raise DomainError("cached_tokens and cache_write_tokens cannot exceed prompt_tokens")
        if self.reasoning_tokens > self.completion_tokens:
            raise DomainError("reasoning_tokens cannot exceed completion_tokens")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Price:
    """One price version of a model, in nano-units per million tokens."""

    model: str
    version: int
    effective_from: datetime
    input_per_million: int
    output_per_million: int
    cached_input_per_million: int | None = None
    gpu_cost_per_hour: int | None = None
    bill_failed_requests: bool = False
    # None: cache writes cost the input price, reasoning the output price
    cache_write_per_million: int | None = None
    reasoning_per_million: int | None = None

    def __post_init__(self) -> None:
        amounts = (self.input_per_million, self.output_per_million,
                   self.cached_input_per_million or 0, self.gpu_cost_per_hour or 0,
                   self.cache_write_per_million or 0, self.reasoning_per_million or 0)
        if min(amounts) < 0:
            raise DomainError(f"prices for model {self.model!r} must not be negative")

    @property
    def label(self) -> str:
        return f"{self.model}@v{self.version}"

    def cost(self, usage: Usage) -> int:
        """Exact cost in nano-units, rounded once (half to even) per request."""
        uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
        answered = usage.completion_tokens - usage.reasoning_tokens
        numerator = (uncached * self.input_per_million
                     + usage.cached_tokens * _or(self.cached_input_per_million, self.input_per_million)
                     + usage.cache_write_tokens * _or(self.cache_write_per_million, self.input_per_million)
                     + answered * self.output_per_million
                     + usage.reasoning_tokens * _or(self.reasoning_per_million, self.output_per_million))
        return divide_rounded(numerator, TOKENS_PER_PRICE_UNIT)

    def worst_case_cost(self, prompt_tokens: int, max_completion_tokens: int) -> int:
        """Cost if every prompt token were uncached and every allowed output token generated.

        Rounded up so a reservation is never smaller than the cost it covers.
        """
        numerator = (prompt_tokens * max(self.input_per_million, self.cached_input_per_million or 0,
                                         self.cache_write_per_million or 0)
                     + max_completion_tokens * max(self.output_per_million,
                                                   self.reasoning_per_million or 0))
        return -(-numerator // TOKENS_PER_PRICE_UNIT)


def _or(price: int | None, default: int) -> int:
    return default if price is None else price


ROUTE_FIELDS = ("upstream_url", "upstream_model", "kind", "max_output_tokens")


class PriceBook(Aggregate):
    """All price versions of one model; a version applies from its effective time on."""

    TOPIC = "meterline.PriceBook"

    class Created(Aggregate.Created):
        TOPIC = "meterline.PriceBook.Created"

    @staticmethod
    def id_for(model: str) -> UUID:
        return stable_id("pricebook", model)

    @classmethod
    def create_id(cls, model: str) -> UUID:
        return cls.id_for(model)

    # Set through the catalogue API (issue 14). A book registered before has neither event, so
    # these class attributes are its values: no route of its own (the config's), never changed.
    route: dict[str, Any] | None = None  # upstream_url, upstream_model, kind, max_output_tokens
    changed_through_api_at: datetime | None = None

    @event("Registered", topic="meterline.ModelRegistered")
    def __init__(self, model: str) -> None:
        self.model = model
        self.prices: list[Price] = []
        self.enabled = True

    # The last two arguments came with issue 15: a PriceSet stored before has neither, and
    # the library passes a method only the attributes its event holds, so the defaults apply
    # (tests/unit/test_pricing_cache_and_reasoning.py loads such an event).
    @event("PriceSet", topic="meterline.PriceSet")
    def _set_price(self, version: int, effective_from: datetime, input_per_million: int,
                   output_per_million: int, cached_input_per_million: int | None,
                   gpu_cost_per_hour: int | None, bill_failed_requests: bool,
                   cache_write_per_million: int | None = None,
                   reasoning_per_million: int | None = None) -> None:
        self.prices.append(Price(self.model, version, effective_from, input_per_million,
                                 output_per_million, cached_input_per_million,
                                 gpu_cost_per_hour, bill_failed_requests,
                                 cache_write_per_million, reasoning_per_million))
        self.prices.sort(key=lambda p: (p.effective_from, p.version))

    @event("RouteSet", topic="meterline.ModelRouteSet")
    def set_route(self, route: dict[str, Any]) -> None:
        """Where the model is served, over the config file's route (`ROUTE_FIELDS`)."""
        self.route = dict(route)

    @event("ChangedThroughApi", topic="meterline.ModelChangedThroughApi")
    def mark_changed_through_api(self, at: datetime) -> None:
        """From now on the catalogue, not the config file, decides this model (sync_config)."""
        self.changed_through_api_at = at

    @event("Enabled", topic="meterline.ModelEnabled")
    def enable(self) -> None:
        self.enabled = True

    @event("Disabled", topic="meterline.ModelDisabled")
    def disable(self) -> None:
        self.enabled = False

    def set_price(self, *, effective_from: datetime, input_per_million: int,
                  output_per_million: int, cached_input_per_million: int | None = None,
                  gpu_cost_per_hour: int | None = None,
                  bill_failed_requests: bool = False, cache_write_per_million: int | None = None,
                  reasoning_per_million: int | None = None) -> Price:
        """Records a new price version, unless the price in force at `effective_from` has its terms."""
        require_aware(effective_from)
        candidate = Price(self.model, len(self.prices) + 1, effective_from, input_per_million,
                          output_per_million, cached_input_per_million, gpu_cost_per_hour,
                          bill_failed_requests, cache_write_per_million, reasoning_per_million)
        # Compared with the version in force then, not the latest: a later-dated version
        # must not swallow an earlier change, and a retried command must not add a copy.
        in_force = [p for p in self.prices if p.effective_from <= effective_from]
        if in_force and _same_terms(in_force[-1], candidate):
            return in_force[-1]
        self._set_price(candidate.version, effective_from, input_per_million, output_per_million,
                        cached_input_per_million, gpu_cost_per_hour, bill_failed_requests,
                        cache_write_per_million, reasoning_per_million)
        return candidate

    def price_at(self, at: datetime) -> Price:
        """The price version in force at `at`."""
        in_force = [p for p in self.prices if p.effective_from <= at]
        if not in_force:
            raise NoPriceError(f"model {self.model!r} has no price in force at {at.isoformat()}")
        return in_force[-1]

    def price_version(self, number: int) -> Price:
        for price in self.prices:
            if price.version == number:
                return price
        raise NoPriceError(f"model {self.model!r} has no price version {number}")


def _same_terms(a: Price, b: Price) -> bool:
    return (a.input_per_million, a.output_per_million, a.cached_input_per_million,
            a.gpu_cost_per_hour, a.bill_failed_requests, a.cache_write_per_million,
            a.reasoning_per_million) == (
        b.input_per_million, b.output_per_million, b.cached_input_per_million,
        b.gpu_cost_per_hour, b.bill_failed_requests, b.cache_write_per_million,
        b.reasoning_per_million)
