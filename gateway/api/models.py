"""The model catalogue at run time (issue 14): list the models, change one.

`PUT /api/admin/models/{name}` enables or disables a model, moves it to another upstream, and
records a new price version (effective now or later; past costs never change), as events in
the registry, which the audit trail records with the admin who asked. A model changed here is
the catalogue's from then on: the config file's lines for it are ignored at start, with a
warning (`infra.container.sync_config`). Every gateway learns a change through the registry's
log, within the propagation delay of docs/operations.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path
from pydantic import AfterValidator, BeforeValidator, Field

from domain.errors import DomainError
from domain.money import MAX_PRICE, NANOS_PER_UNIT
from domain.pricing import Price, PriceBook
from domain.services.acting import as_actor
from gateway import errors
from gateway.api.deps import Admin, Ctx, usd, usd_to_nanos
from gateway.api.schemas import Instant, Money, Strict
from gateway.context import GatewayContext

router = APIRouter(prefix="/api/admin/models", tags=["models"])
ModelName = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$",
                                description="the name clients send as `model`")]
PRICE_FIELDS = ("input_per_million", "output_per_million", "cached_input_per_million",
                "cache_write_per_million", "reasoning_per_million", "gpu_cost_per_hour")


def _upstream(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
        raise ValueError("upstream_url must be an http(s) URL with a host and no credentials or query, "
                         "e.g. http://10.0.0.5:8000/v1")
    return value.rstrip("/")


def _not_a_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError("send USD as a decimal string such as \"0.50\": a JSON number with a fraction "
                         "or an exponent is read as a binary float, which may not be the amount written "
                         f"(got {value!r})")
    return value


Usd = Annotated[Money, BeforeValidator(_not_a_float)]  # 0.30000000000000001 would be stored as 0.3


class NewPrice(Strict):
    input_per_million: Usd = Field(description="USD per million input tokens, e.g. '0.50'")
    output_per_million: Usd = Field(description="USD per million output tokens")
    cached_input_per_million: Usd | None = None
    cache_write_per_million: Usd | None = None
    reasoning_per_million: Usd | None = None
    gpu_cost_per_hour: Usd | None = Field(default=None, description="USD per hour, for model economics")
    effective_from: Instant | None = Field(default=None, description="default: now; never in the past")


class ModelChange(Strict):
    enabled: bool | None = None
    upstream_url: Annotated[str, Field(max_length=2000), AfterValidator(_upstream)] | None = None
    upstream_model: str | None = Field(default=None, min_length=1, max_length=200)
    kind: Literal["chat", "embedding"] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    price: NewPrice | None = None


def _bounded(nanos: int, field: str) -> int:
    """A price of at most a trillion USD: an amount past 28 significant digits is shown rounded,
    and a per-token price that size is a typo."""
    if nanos > MAX_PRICE:
        raise errors.bad_request(f"'{field}' must be at most {MAX_PRICE // NANOS_PER_UNIT:,} USD", field)
    return nanos


def _price(price: Price) -> dict[str, Any]:
    shown = {name: usd(getattr(price, name)) if getattr(price, name) is not None else None
             for name in PRICE_FIELDS}
    return {"version": price.version, "effective_from": price.effective_from.isoformat(), **shown}


def _model(ctx: GatewayContext, book: PriceBook) -> dict[str, Any]:
    route = ctx.routes.get(book.model)
    now = ctx.clock.now()
    in_force = [p for p in book.prices if p.effective_from <= now]
    changed = book.changed_through_api_at
    return {"model": book.model, "enabled": book.enabled,
            "decided_by": "catalogue" if changed else "config file",
            "changed_through_api_at": changed.isoformat() if changed else None,
            "upstream_url": route.upstream_url if route else None,
            "upstream_model": route.upstream_model if route else None, "kind": route.kind if route else None,
            "max_output_tokens": route.max_output_tokens if route else None,
            "price_in_force": _price(in_force[-1]) if in_force else None,
            "prices": [_price(p) for p in book.prices]}


@router.get("", summary="Every model of the catalogue, its route, state and price versions")
async def models(ctx: Ctx, _: Admin) -> dict:
    books = sorted(ctx.registry_view.models(), key=lambda b: b.model)
    return {"models": [_model(ctx, book) for book in books]}


@router.get("/{name}", summary="One model of the catalogue")
async def model(ctx: Ctx, _: Admin, name: ModelName) -> dict:
    book = ctx.registry_view.model(name)
    if book is None:
        raise errors.not_found(f"model {name!r} is not in the catalogue; GET /api/admin/models lists it",
                               param="name")
    return _model(ctx, book)


@router.put("/{name}", summary="Change or add a model: enable/disable, upstream, a new price version")
async def change(ctx: Ctx, who: Admin, name: ModelName, body: ModelChange) -> dict:
    route = {k: v for k, v in body.model_dump(include={"upstream_url", "upstream_model", "kind",
                                                       "max_output_tokens"}).items() if v is not None}
    if name not in ctx.routes and "upstream_url" not in route:
        raise errors.bad_request(f"model {name!r} is not in the config file: give its upstream_url",
                                 "upstream_url", code="upstream_required")
    price = None
    if body.price is not None:
        price = {field: _bounded(usd_to_nanos(value, f"price.{field}"), f"price.{field}")
                 for field in PRICE_FIELDS if (value := getattr(body.price, field)) is not None}
    book = ctx.registry_view.model(name)
    merged = {**(book.route or {}), **route} if book is not None else route
    try:
        await ctx.command(as_actor(who.actor, ctx.registry.change_model), name, enabled=body.enabled,
                          route=merged or None, price=price,
                          effective_from=body.price.effective_from if body.price else None)
    except DomainError as exc:
        raise errors.bad_request(str(exc), None, code="invalid_model_change") from None
    return _model(ctx, ctx.registry_view.model(name))
