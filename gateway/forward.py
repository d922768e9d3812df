"""Forwarding an admitted request upstream and metering what it used, before replying."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.responses import Response

from domain.ids import random_id
from domain.pricing import Usage
from domain.usage import RequestMetered, UsageSource, billed_cost
from gateway import errors
from gateway.admission import Admitted
from gateway.context import GatewayContext
from gateway.estimate import estimate_prompt_tokens, estimate_tokens
from gateway.metering import publish_metered
from gateway.responses import JsonBytesResponse

log = logging.getLogger(__name__)
UPSTREAM_PATH = {"chat": "/chat/completions", "completions": "/completions",
                 "embeddings": "/embeddings"}


def upstream_body(adm: Admitted) -> bytes:
    """The client's request with the upstream model name, a hard output cap and default stops."""
    body = dict(adm.payload)
    body["model"] = adm.route.upstream_model
    if adm.endpoint != "embeddings":
        body.pop("max_completion_tokens", None)
        body["max_tokens"] = adm.max_output_tokens  # the reservation covers no more than this
        if adm.route.stop and body.get("stop") is None:
            body["stop"] = list(adm.route.stop)
        if body.get("stream") is True:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
    return orjson.dumps(body)


def parse_usage(raw: Any) -> Usage | None:
    """The upstream's usage block, or None if it is missing or malformed."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens", 0)
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    values = (prompt, completion or 0, cached or 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    try:
        return Usage(values[0], values[1], min(values[2], values[0]))
    except ValueError:
        return None


def _choice_text_bytes(data: dict[str, Any]) -> int:
    total = 0
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        text = choice.get("text") or (message.get("content") if isinstance(message, dict) else "")
        if isinstance(text, str):
            total += len(text.encode())
    return total


async def meter(ctx: GatewayContext, adm: Admitted, *, status: int, usage: Usage | None,
                started: float, stream: bool = False, disconnected: bool = False,
                generated_bytes: int = 0) -> RequestMetered:
    """Records a request's usage durably; raises 503 (nothing served) if that fails."""
    source = UsageSource.UPSTREAM
    if usage is None:
        source = UsageSource.ESTIMATED
        prompt = estimate_prompt_tokens(adm.payload, adm.endpoint) if 200 <= status < 300 or \
            generated_bytes else 0
        usage = Usage(prompt, estimate_tokens(generated_bytes))
    key = adm.key
    fact = RequestMetered(
        event_id=random_id(), occurred_at=ctx.clock.now(), key_id=adm.key_id, user_id=key.user_id,
        team_id=key.team_id, model=adm.route.name, endpoint="/v1" + UPSTREAM_PATH[adm.endpoint],
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens, latency_ms=int((time.perf_counter() - started) * 1000),
        status=status, usage_source=source, price_version=adm.price.version,
        cost=billed_cost(adm.price, usage, status), job_id=adm.job_id, stream=stream,
        client_disconnected=disconnected, gateway_id=ctx.options.gateway_id)
    if fact.cost > adm.reservation.amount:
        log.warning("request %s cost %d above its reservation %d: the upstream ignored max_tokens",
                    fact.event_id, fact.cost, adm.reservation.amount)
    ctx.guard.settle(adm.reservation, fact.event_id, fact.cost)
    ctx.rate_limiter.correct(adm.key_id, adm.prompt_bound + adm.max_output_tokens, usage.total_tokens)
    try:
        # No shield needed: every bus queues the message before its first suspension point,
        # so a cancelled request's fact still goes out (tests/contract/test_event_bus.py).
        await publish_metered(ctx.bus, fact, ctx.options.gateway_id)
    except Exception as exc:
        ctx.guard.forget(adm.reservation.scopes, fact.event_id)
        ctx.metrics.refused("metering_unavailable")
        log.error("metering publish failed for %s: %s", fact.event_id, exc)
        raise errors.GatewayError(503, "metering is unavailable, so the response was withheld "
                                  "rather than served unmetered; retry shortly", "api_error",
                                  "metering_unavailable") from exc
    ctx.metrics.observe_request(adm.route.name, adm.endpoint, status, fact.latency_ms,
                                usage.prompt_tokens, usage.completion_tokens, fact.cost)
    ctx.directory.last_key_use[key.id] = fact.occurred_at
    return fact


def upstream_error(status: int, body: bytes, model: str) -> Response:
    """Passes an upstream's OpenAI-shaped 4xx through; anything else becomes a clear 502."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if 400 <= status < 500 and isinstance(data, dict) and isinstance(data.get("error"), dict):
        return JsonBytesResponse(body, status)
    return errors.upstream_failed(f"the model server for '{model}' answered HTTP {status}; "
                                  "try again later").response()
