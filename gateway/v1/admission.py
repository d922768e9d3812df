"""Admission on the hot path: parse, authenticate, authorise, rate-limit, reserve. No I/O."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from domain.errors import NoPriceError
from domain.keys import ApiKey
from domain.money import usd_text
from domain.pricing import Price
from domain.quota_policy import Decision, Scope
from gateway import errors
from gateway.context import GatewayContext, ModelRoute
from gateway.v1 import messages_api, responses_api
from gateway.v1.estimate import bound_prompt
from gateway.v1.refusals import key_refusal, quota_refusal, rate_refusal
from gateway.v1.tags import NO_TAGS
from gateway.v1.unbounded_input import check_budgets_can_hold, check_server_context
from gateway.views.quota_guard import Reservation, ScopeKey

ENDPOINT_PATH = {"chat": "/chat/completions", "completions": "/completions",
                 "embeddings": "/embeddings", "responses": "/responses", "messages": "/messages"}
ENDPOINT_KIND = {"chat": "chat", "completions": "chat", "embeddings": "embedding",
                 "responses": "chat", "messages": "chat"}
# The APIs with their own request rules (check_request, requested_max_tokens, upstream_fields)
API_RULES = {"responses": responses_api, "messages": messages_api}


@dataclass
class Admitted:
    key: ApiKey
    route: ModelRoute
    price: Price
    payload: dict[str, Any]
    endpoint: str              # chat | completions | embeddings | responses | messages
    max_output_tokens: int
    prompt_bound: int
    reservation: Reservation
    job_id: str | None
    key_id: str                # str(key.id), computed once
    labels: Mapping[str, str] = dataclasses.field(default_factory=lambda: NO_TAGS)  # v1/tags.py
    job_hold: Any = None  # what the call holds against its job's cap (v1/job_header.py), settled by metering
    choices: int = 1  # completions asked for (n, best_of), each up to max_output_tokens
    prompt_bounded: bool = True  # prompt_bound holds the whole prompt (no unbounded media, no stored state)
    owner: responses_api.Owner | None = None  # seals response ids toward an upstream that keeps state


def credential(authorization: str | None, x_api_key: str | None) -> str | None:
    """The Authorization header, or Anthropic's `x-api-key` (what its SDK sends) as if it were one."""
    if authorization or not x_api_key:
        return authorization
    return "Bearer " + x_api_key


def authenticate(ctx: GatewayContext, authorization: str | None, now: datetime | None = None) -> ApiKey:
    if not authorization or not authorization.lower().startswith("bearer "):
        ctx.metrics.refused("missing_key")
        raise errors.unauthorized("no API key: send 'Authorization: Bearer sk-…' (or 'x-api-key: "
                                  "sk-…') with a key from POST /api/keys", code="missing_api_key")
    secret = authorization[7:].strip()
    digest, at = ctx.hmac(secret), now or ctx.clock.now()
    match = ctx.registry_view.key_for_secret(digest, at)
    if match is None:
        ctx.metrics.refused("invalid_key")
        raise key_refusal(errors.unauthorized("the API key is unknown, revoked or expired; create a "
                                              "new key"), ctx.registry_view.key_holding(digest), at)
    return match.key


def _requested_max_tokens(payload: dict[str, Any]) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = payload.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.bad_request(f"'{field}' must be a positive integer, got {value!r}", field)
        return value
    return None


PROMPT_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}


def _check_shape(payload: dict[str, Any], endpoint: str) -> None:
    """Refuses bodies the worst-case estimate cannot bound, before anything is reserved."""
    field = PROMPT_FIELD[endpoint]
    value = payload.get(field)
    if endpoint == "chat":
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            raise errors.bad_request("'messages' is required and must be a list of message objects "
                                     "like {\"role\": \"user\", \"content\": \"…\"}", field)
    elif not isinstance(value, str | list):
        raise errors.bad_request(f"'{field}' is required and must be a string or a list", field)
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise errors.bad_request("'stream_options' must be an object, e.g. {\"include_usage\": true}",
                                 "stream_options")


def _choices(payload: dict[str, Any], endpoint: str) -> int:
    """How many completions a request asks for; each may use up to max_tokens."""
    most = 1
    for field in ("n", "best_of") if endpoint == "completions" else ("n",):
        value = payload.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.bad_request(f"'{field}' must be a positive integer, got {value!r}", field)
        most = max(most, value)
    return most


def resolve_model(ctx: GatewayContext, key: ApiKey, payload: dict[str, Any], endpoint: str,
                  now: datetime) -> tuple[ModelRoute, Price]:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise errors.bad_request("'model' is required and must be a string; see GET /v1/models",
                                 "model", code="missing_model")
    route = ctx.routes.get(model)
    book = ctx.registry_view.model(model)
    if route is None or book is None or not book.enabled:
        raise errors.not_found(f"the model '{errors.shown(model)}' does not exist or is disabled; "
                               "see GET /v1/models for the models your key may use")
    if not key.allows_model(model):
        ctx.metrics.refused("model_not_allowed")
        raise errors.forbidden(f"this key may not use the model '{model}'; allowed: "
                               f"{', '.join(key.models) or 'none'}", "model_not_allowed")
    granted = ctx.registry_view.granted_models(key.user_id)
    if granted is not None and model not in granted:
        ctx.metrics.refused("model_not_granted")
        raise errors.forbidden(f"the model '{model}' is no longer granted to this key's user; "
                               f"granted: {', '.join(sorted(granted)) or 'none'}. An admin changes "
                               "grants with PUT /api/admin/users/{user_id}/grant", "model_not_granted")
    if ENDPOINT_KIND[endpoint] != route.kind:
        raise errors.bad_request(f"the model '{model}' is a {route.kind} model and does not "
                                 f"serve /v1{ENDPOINT_PATH[endpoint]}", "model", code="wrong_endpoint")
    if endpoint not in route.apis:
        offered = ", ".join(f"/v1{ENDPOINT_PATH[api]}" for api in ENDPOINT_PATH if api in route.apis)
        raise errors.bad_request(f"the model server for '{model}' does not speak the {endpoint} API "
                                 f"(/v1{ENDPOINT_PATH[endpoint]}); it offers {offered or 'none'}. "
                                 "An admin lists the APIs an upstream speaks in the model's `apis`",
                                 "model", code="api_not_supported")
    try:
        price = book.price_at(now)
    except NoPriceError:
        raise errors.GatewayError(503, f"the model '{model}' has no price in force yet; "
                                  "ask an admin to set one", "api_error", "model_not_priced") from None
    return route, price


def admit(ctx: GatewayContext, endpoint: str, payload: dict[str, Any], key: ApiKey,
          job_id: str | None, now: datetime, labels: Mapping[str, str] = NO_TAGS) -> Admitted:
    """Decides whether a request may go upstream, holding its worst-case cost if so."""
    route, price = resolve_model(ctx, key, payload, endpoint, now)
    rules = API_RULES.get(endpoint)
    owner = None
    if rules is not None:
        rules.check_request(payload, route)
        if endpoint == "responses" and route.keeps_state:
            owner = responses_api.Owner(ctx.hmac, str(key.id))
            responses_api.check_owned(payload, route, owner)
    else:
        _check_shape(payload, endpoint)
    if endpoint == "embeddings":
        max_out = 0
    else:
        requested = rules.requested_max_tokens(payload) if rules else _requested_max_tokens(payload)
        cap = route.max_output_tokens or ctx.options.default_max_tokens
        max_out = min(requested, cap) if requested else cap
    bound = bound_prompt(payload, endpoint, route)
    prompt_bound = bound.tokens
    # a malformed n is a 400 before any limit is touched; Responses and Messages have no n (their
    # upstream is not sent one), so they reserve one answer
    choices = _choices(payload, endpoint) if rules is None else 1
    key_id = str(key.id)
    scopes = [(Scope.KEY, key_id), (Scope.USER, key.user_id)]
    if key.team_id:
        scopes.append((Scope.TEAM, key.team_id))
    if bound.unbounded is not None:
        check_budgets_can_hold(ctx, scopes, route, bound.unbounded,
                               "input" if endpoint == "responses" else "messages")
    bounded = bound.unbounded is None
    if rules is not None:
        bounded = check_server_context(ctx, scopes, route, payload, endpoint) and bounded
    ok, reason, wait = ctx.rate_limiter.admit(key_id, time.monotonic(), key.rpm_limit,
                                             key.tpm_limit, prompt_bound + max_out)
    if not ok:
        ctx.metrics.refused("rate_limit")
        raise rate_refusal(errors.rate_limited(f"{reason} for this key; retry in {wait} s", wait),
                           key, reason, wait)
    amount = price.worst_case_cost(prompt_bound, max_out * choices)
    admitted = Admitted(key, route, price, payload, endpoint, max_out, prompt_bound, NOT_YET, job_id,
                        key_id, labels, choices=choices, prompt_bounded=bounded, owner=owner)
    reservation, decision = ctx.guard.reserve(scopes, amount, now)
    if reservation is None:
        if decision.waits_on_reserved and ctx.options.reservation_wait_s > 0:
            raise MustWait(admitted, scopes, amount)
        refuse_quota(ctx, admitted, decision)
    admitted.reservation = reservation
    return admitted


NOT_YET = Reservation(0, (), 0)  # an admitted request's placeholder until the guard holds its cost


class MustWait(Exception):  # noqa: N818 - not an error: the request waits, then is decided again
    """The request fits its caps but not beside what others hold reserved: wait for them
    (`wait_for_reservations`) instead of refusing affordable work."""

    def __init__(self, admitted: Admitted, scopes: list[ScopeKey], amount: int) -> None:
        super().__init__("waiting for reservations to settle")
        self.admitted, self.scopes, self.amount = admitted, scopes, amount


async def wait_for_reservations(ctx: GatewayContext, waiting: MustWait) -> Admitted:
    """Holds the request's worst case once others' reservations settle enough, or refuses it
    when the wait (`reservation_wait_s`) ends or its own worst case no longer fits."""
    reservation, decision = await ctx.guard.reserve_waiting(waiting.scopes, waiting.amount,
                                                            ctx.options.reservation_wait_s)
    if reservation is None:
        refuse_quota(ctx, waiting.admitted, decision)
    waiting.admitted.reservation = reservation
    return waiting.admitted


def refuse_quota(ctx: GatewayContext, adm: Admitted, decision: Decision) -> NoReturn:
    ctx.rate_limiter.correct(adm.key_id, adm.prompt_bound + adm.max_output_tokens, 0)
    ctx.metrics.refused(f"quota_{decision.scope}")
    waited = (f"; other requests held {usd_text(decision.reserved)} reserved and did not settle "
              f"within {ctx.options.reservation_wait_s:g} s" if decision.waits_on_reserved else "")
    raise quota_refusal(errors.insufficient_quota(
        f"{decision.reason}{waited} (policy v{decision.policy_version}). Ask an admin to raise the "
        "budget or wait for the next period."), decision)
