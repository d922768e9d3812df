"""Prompts no reservation can bound, refused where a hard or grace budget must hold.

A media part with no per-model bound (its bytes do not bound what the model counts for it),
and a Responses request that brings in text the upstream keeps (`previous_response_id`,
`conversation`, a stored `prompt`, on a model with `upstream_keeps_state`): under a soft
budget or none they are served and metered by the upstream's usage; under a hard or grace
budget the cap could not hold, so they are a 400 that says what to send instead. Only such
requests get here: the budget snapshots are not on the hot path.
"""

from __future__ import annotations

from typing import Any

from domain.quota_policy import Mode
from gateway import errors
from gateway.context import GatewayContext, ModelRoute
from gateway.v1.estimate import MEDIA_LIMIT_FIELD
from gateway.v1.responses_api import stored_context
from gateway.views.quota_guard import ScopeKey


def binding_budget(ctx: GatewayContext, scopes: list[ScopeKey]) -> tuple[ScopeKey, dict] | None:
    """The first scope whose budget blocks (hard or grace), with its policy. Only requests whose
    prompt has no upper bound, or whose upstream reported more than was reserved, ask: the
    budget snapshots are not on the hot path."""
    for scope in scopes:
        snapshot = ctx.guard.snapshot(scope)
        policy = snapshot["policy"] if snapshot else None
        if policy is not None and policy["mode"] != Mode.SOFT:
            return scope, policy
    return None


def check_budgets_can_hold(ctx: GatewayContext, scopes: list[ScopeKey], route: ModelRoute,
                            kind: str) -> None:
    """Refuses a media part with no per-model bound where a hard or grace budget must hold.

    Its bytes do not bound what the model counts for it, so no reservation is sure to cover it.
    """
    if (binding := binding_budget(ctx, scopes)) is not None:
        scope, policy = binding
        field = MEDIA_LIMIT_FIELD[kind]
        ctx.metrics.refused("unbounded_input")
        raise errors.bad_request(
            f"the model '{route.name}' has no {field} configured, so the prompt tokens of the {kind} "
            f"in this request have no upper bound and cannot be held against the {policy['mode']} "
            f"budget of {scope[0]} {scope[1]}; ask an admin to set {field} for '{route.name}' in "
            f"its [[models]] entry, or send the request without {kind} parts", "messages",
            code="unbounded_input")


def check_stored_context(ctx: GatewayContext, scopes: list[ScopeKey], route: ModelRoute,
                         payload: dict[str, Any]) -> None:
    """Refuses a Responses request that continues state the upstream keeps, where a hard or
    grace budget must hold: the earlier turns are not in the request, so not in its bound."""
    stored = stored_context(payload, route)
    if stored is None or (binding := binding_budget(ctx, scopes)) is None:
        return
    (scope, scope_id), policy = binding
    ctx.metrics.refused("unbounded_input")
    raise errors.bad_request(
        f"'{stored}' brings in text the model server for '{route.name}' keeps and this request does "
        f"not carry, so its prompt tokens have no upper bound and cannot be held against the "
        f"{policy['mode']} budget of {scope} {scope_id}; send that text in 'input' instead", stored,
        code="unbounded_input")
