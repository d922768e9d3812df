"""Prompts no reservation can bound, refused where a hard or grace budget must hold.

A media part with no per-model bound (its bytes do not bound what the model counts for it),
a Responses request that brings in text the upstream keeps (`previous_response_id`, a stored
`prompt`, on a model with `upstream_keeps_state`), and tools the model server runs itself
(web search, file search, code execution, MCP: their results join the prompt there): under a soft
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
                            kind: str, param: str = "messages") -> None:
    """Refuses a media part with no per-model bound where a hard or grace budget must hold.

    Its bytes do not bound what the model counts for it, so no reservation is sure to cover it.
    `param`: the request's field holding the parts ("input" on the Responses API).
    """
    if (binding := binding_budget(ctx, scopes)) is not None:
        scope, policy = binding
        field = MEDIA_LIMIT_FIELD[kind]
        ctx.metrics.refused("unbounded_input")
        raise errors.bad_request(
            f"the model '{route.name}' has no {field} configured, so the prompt tokens of the {kind} "
            f"in this request have no upper bound and cannot be held against the {policy['mode']} "
            f"budget of {scope[0]} {scope[1]}; ask an admin to set {field} for '{route.name}' in "
            f"its [[models]] entry, or send the request without {kind} parts", param,
            code="unbounded_input")


# Tools the model server runs itself (OpenAI's hosted tools, Anthropic's server tools): their
# results join the prompt on the server's side, and some are priced per call besides.
SERVER_TOOLS = {"responses": ("web_search", "file_search", "code_interpreter", "mcp", "image_generation"),
                "messages": ("web_search_", "web_fetch_", "code_execution_")}


def server_context(payload: dict[str, Any], endpoint: str, route: ModelRoute) -> str | None:
    """The field by which a Responses or Messages request has the model server bring in text the
    request does not carry (state it keeps, a tool it runs, MCP servers it calls), or None."""
    if endpoint == "responses" and (stored := stored_context(payload, route)) is not None:
        return stored
    prefixes = SERVER_TOOLS.get(endpoint)
    if prefixes is None:
        return None
    tools = payload.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith(prefixes):
            return "tools"
    return "mcp_servers" if endpoint == "messages" and payload.get("mcp_servers") else None


def check_server_context(ctx: GatewayContext, scopes: list[ScopeKey], route: ModelRoute,
                         payload: dict[str, Any], endpoint: str) -> bool:
    """Refuses a request whose model server brings in text it does not carry (`server_context`)
    where a hard or grace budget must hold: that text is not in its bound. Whether the bound
    holds the whole prompt."""
    field = server_context(payload, endpoint, route)
    if field is None:
        return True
    if (binding := binding_budget(ctx, scopes)) is None:
        return False
    (scope, scope_id), policy = binding
    ctx.metrics.refused("unbounded_input")
    what = "a tool the model server runs (its results join the prompt there)" if field == "tools" \
        else "MCP servers the model server calls" if field == "mcp_servers" \
        else f"text the model server for '{route.name}' keeps and this request does not carry"
    instead = "send that text in 'input' instead" if field not in ("tools", "mcp_servers") else \
        "use function tools, whose results you send yourself, or a soft budget"
    raise errors.bad_request(
        f"'{field}' brings in {what}, so its prompt tokens have no upper bound and cannot be held "
        f"against the {policy['mode']} budget of {scope} {scope_id}; {instead}", field,
        code="unbounded_input")
