"""Where each model is served: the config file's routes, with the catalogue's changes over them.

A model changed through `PUT /api/admin/models/{name}` carries its own route fields (upstream
URL and model, kind, output cap) on its price book, which the registry view follows; a model
added through the catalogue has only those. Looked up on every /v1 request: a model without
catalogue fields costs one dict lookup more than the config's dict did.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

from gateway.context import ModelRoute
from gateway.views.registry_view import RegistryView


class CatalogueRoutes(Mapping[str, ModelRoute]):
    def __init__(self, configured: Mapping[str, ModelRoute], view: RegistryView) -> None:
        self._configured = dict(configured)
        self._view = view
        self._made: dict[tuple, ModelRoute] = {}

    def get(self, name: str, default: ModelRoute | None = None) -> ModelRoute | None:  # type: ignore[override]
        book = self._view.model(name)
        fields = book.route if book is not None else None
        base = self._configured.get(name)
        if not fields or (base is None and not fields.get("upstream_url")):
            return base if base is not None else default
        key = (name, tuple(sorted(fields.items())))
        route = self._made.get(key)
        if route is None:
            route = self._made[key] = self._route(name, base, fields)
        return route

    @staticmethod
    def _route(name: str, base: ModelRoute | None, fields: dict) -> ModelRoute:
        changes = {k: v for k, v in fields.items() if v is not None}
        if base is not None:
            return replace(base, **changes)
        return ModelRoute(name=name, upstream_url=changes.pop("upstream_url"),
                          upstream_model=changes.pop("upstream_model", None) or name, **changes)

    def __getitem__(self, name: str) -> ModelRoute:
        route = self.get(name)
        if route is None:
            raise KeyError(name)
        return route

    def __iter__(self) -> Iterator[str]:
        routed = {book.model for book in self._view.models() if book.route and book.route.get("upstream_url")}
        return iter(sorted(self._configured.keys() | routed))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None
