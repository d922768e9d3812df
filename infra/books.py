"""What finance reports need of the registry outside a gateway: names for ids, and price versions."""

from __future__ import annotations

from collections.abc import Iterable

from domain.pricing import Price
from domain.services.registry import Registry
from reports.directory import LookupDirectory


def registry_directory(registry: Registry) -> LookupDirectory:
    return LookupDirectory(registry.key, registry.team)


def prices_of(registry: Registry, models: Iterable[str]) -> list[Price]:
    """Every stored price version of the named models (a model never priced has none)."""
    found: list[Price] = []
    for model in models:
        try:
            found.extend(registry.price_book(model).prices)
        except ValueError:  # the registry's NotFoundError: configured but never priced
            continue
    return found
