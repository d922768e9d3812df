"""`explain`: what became of one /v1 request, by its request id.

A refused request has a decision record (domain/decisions.py) in the decisions store; a
served one has its RequestMetered fact(s) in the ledger, found by the time its id carries
(domain/services/request_lookup.py), priced by the version the fact names.
"""

from __future__ import annotations

from typing import Any

from domain.errors import NoPriceError
from domain.services.ledger import scopes_of
from domain.services.registry import NotFoundError
from domain.services.request_lookup import facts_of_request
from domain.usage import RequestMetered


def explain(request_id: str, decisions: Any, ledger: Any, registry: Any) -> dict[str, Any] | None:
    """The refusal record or the served request's charge; None when neither is known."""
    record = decisions.refusal(request_id) if decisions is not None else None
    if record is not None:
        return record.describe()
    facts = facts_of_request(ledger, request_id)
    if not facts:
        return None
    return describe_served(request_id, facts, _price(registry, facts[0]))


def describe_served(request_id: str, facts: list[RequestMetered],
                    price: dict[str, Any] | None) -> dict[str, Any]:
    """A served request as `explain` shows it: its parts summed (a stream is metered in parts)."""
    last = facts[-1]
    return {"request_id": request_id, "outcome": "served", "time": facts[0].occurred_at.isoformat(),
            "status": last.status, "key_id": last.key_id, "user_id": last.user_id,
            "team_id": last.team_id, "model": last.model, "endpoint": last.endpoint,
            "prompt_tokens": sum(f.prompt_tokens for f in facts),
            "completion_tokens": sum(f.completion_tokens for f in facts),
            "cached_tokens": sum(f.cached_tokens for f in facts),
            "usage_source": str(last.usage_source), "price_version": last.price_version,
            "price": price, "cost": sum(f.cost for f in facts), "parts": len(facts),
            "complete": last.final, "stream": last.stream, "job_id": last.job_id,
            "charged_to": [f"{scope}:{scope_id}" for scope, scope_id in scopes_of(last)],
            "fact_ids": [f.event_id for f in facts]}


def _price(registry: Any, fact: RequestMetered) -> dict[str, Any] | None:
    """The price version that rated the fact, per million tokens in nano-units."""
    try:
        price = registry.price_book(fact.model).price_version(fact.price_version)
    except (NotFoundError, NoPriceError):
        return None
    return {"version": price.version, "effective_from": price.effective_from.isoformat(),
            "input_per_million": price.input_per_million,
            "output_per_million": price.output_per_million,
            "cached_input_per_million": price.cached_input_per_million}
