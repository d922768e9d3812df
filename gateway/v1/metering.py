"""Metering a served request: its RequestMetered fact, settled against its reservation and
handed durably to the bus before the answer goes out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from domain.ids import time_ordered_id
from domain.ports.bus import USAGE_TOPIC, BusMessage, EventBus
from domain.pricing import Usage
from domain.usage import EVENT_TYPE as REQUEST_METERED
from domain.usage import RequestMetered, UsageSource, billed_cost
from gateway import errors
from gateway.context import GatewayContext
from gateway.v1.admission import ENDPOINT_PATH, Admitted
from gateway.v1.estimate import estimate_prompt_tokens, estimate_tokens, reported_count
from gateway.v1.unbounded_input import binding_budget

log = logging.getLogger(__name__)


def parse_usage(raw: Any) -> Usage | None:
    """The upstream's usage block, or None if it is missing or malformed."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens", 0)
    details = raw.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    values = (prompt, completion or 0, cached or 0)
    if not all(map(reported_count, values)):
        return None
    try:
        return Usage(values[0], values[1], min(values[2], values[0]))
    except ValueError:
        return None


def choice_text_bytes(data: dict[str, Any]) -> int:
    total = 0
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        text = choice.get("text") or (message.get("content") if isinstance(message, dict) else "")
        if isinstance(text, str):
            total += len(text.encode())
    return total


@dataclass
class StreamBill:
    """What the parts of one stream published so far billed: a stream that runs long is
    metered in parts (gateway/v1/streaming.py), each for what it adds."""

    request_id: str = field(default_factory=lambda: time_ordered_id(time.time_ns() // 1_000_000))
    parts: int = 0
    usage: Usage = Usage(0, 0)
    cost: int = 0
    released: int = 0  # of the reservation, handed back by the parts so far


async def meter(ctx: GatewayContext, adm: Admitted, *, status: int, usage: Usage | None,
                started: float, stream: bool = False, disconnected: bool = False,
                generated_bytes: int = 0, bill: StreamBill | None = None,
                final: bool = True, fact_id: str | None = None) -> RequestMetered:
    """Records a request's usage durably; raises 503 (nothing served) if that fails.

    With a `bill`, `usage` is the stream's total so far and the fact carries only what it
    adds to the parts already published (never less than nothing: a part's counts are
    lower bounds, so the final part settles the exact total)."""
    source = UsageSource.UPSTREAM
    if usage is None:
        source = UsageSource.ESTIMATED
        prompt = estimate_prompt_tokens(adm.payload, adm.endpoint) if 200 <= status < 300 or \
            generated_bytes else 0
        usage = Usage(prompt, estimate_tokens(generated_bytes))
    usage = within_reservation(ctx, usage, adm, source)
    total_cost = billed_cost(adm.price, usage, status)
    part, cost, request_id, requests = usage, total_cost, "", 1
    release = adm.reservation.amount
    if bill is not None:
        part = _added(usage, bill.usage)
        cost = max(0, total_cost - bill.cost)
        request_id, requests = bill.request_id, int(bill.parts == 0)
        left = adm.reservation.amount - bill.released
        release = left if final else min(cost, left)
    key = adm.key
    fact = RequestMetered(
        # Time-ordered, so `explain` finds the fact by its id alone (domain/services/request_lookup.py).
        event_id=fact_id or time_ordered_id(time.time_ns() // 1_000_000), occurred_at=ctx.clock.now(),
        key_id=adm.key_id, user_id=key.user_id,
        team_id=key.team_id, model=adm.route.name, endpoint="/v1" + ENDPOINT_PATH[adm.endpoint],
        prompt_tokens=part.prompt_tokens, completion_tokens=part.completion_tokens,
        cached_tokens=part.cached_tokens, cache_write_tokens=part.cache_write_tokens,
        reasoning_tokens=part.reasoning_tokens, latency_ms=int((time.perf_counter() - started) * 1000),
        status=status, usage_source=source, price_version=adm.price.version,
        cost=cost, job_id=adm.job_id, stream=stream,
        client_disconnected=disconnected, gateway_id=ctx.options.gateway_id,
        request_id=request_id, requests=requests, final=final, labels=adm.labels)
    if final and total_cost > adm.reservation.amount:
        log.warning("request %s cost %d above its reservation %d: the upstream ignored max_tokens",
                    fact.request, total_cost, adm.reservation.amount)
    ctx.guard.settle(adm.reservation, fact.event_id, fact.cost, release)
    if final:
        ctx.rate_limiter.correct(adm.key_id, adm.prompt_bound + adm.max_output_tokens,
                                 usage.total_tokens)
    try:
        # No shield needed: every bus queues the message before its first suspension point,
        # so a cancelled request's fact still goes out (tests/contract/test_event_bus.py).
        await publish_metered(ctx.bus, fact, ctx.options.gateway_id)
    except Exception as exc:
        ctx.guard.forget(adm.reservation.scopes, fact.event_id)
        if bill is not None and not final:  # the stream ends here: hand back what it held
            ctx.guard.release(adm.reservation, adm.reservation.amount - bill.released - release)
        if adm.job_hold is not None:  # nothing of this part counts on the job; the call ends here
            adm.job_hold(None, 0, adm.reservation.amount - (bill.released if bill else 0), True)
        ctx.metrics.refused("metering_unavailable")
        log.error("metering publish failed for %s: %s", fact.event_id, exc)
        raise errors.GatewayError(503, "metering is unavailable, so the response was withheld "
                                  "rather than served unmetered; retry shortly", "api_error",
                                  "metering_unavailable") from exc
    if adm.job_hold is not None:  # the job's cap counts the part once it is metered
        adm.job_hold(fact.event_id, fact.cost, release, final)
    if bill is not None:
        bill.parts += 1
        bill.usage, bill.cost, bill.released = _sum(bill.usage, part), bill.cost + cost, \
            bill.released + release
    if final:
        ctx.metrics.observe_request(adm.route.name, adm.endpoint, status, fact.latency_ms,
                                    usage.prompt_tokens, usage.completion_tokens, total_cost)
    ctx.registry_view.last_key_use[key.id] = fact.occurred_at
    return fact


def within_reservation(ctx: GatewayContext, usage: Usage, adm: Admitted, source: UsageSource) -> Usage:
    """Under a hard or grace budget, `usage` held to what the request was reserved for: a prompt
    of no more tokens than its bound (one per byte, when it holds the whole prompt) and no more
    output than the cap the upstream was sent. A count past either is the upstream's error, and
    the cap must hold (a server reporting a million cache reads for "hi" would pass it on its
    own); a job's cost cap likewise. Under a soft budget or none the count is billed as reported."""
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    if adm.prompt_bounded:
        prompt = min(prompt, adm.prompt_bound)
    if adm.endpoint != "embeddings":
        completion = min(completion, adm.max_output_tokens * adm.choices)
    if (prompt, completion) == (usage.prompt_tokens, usage.completion_tokens):
        return usage
    # a job's max_cost_usd is held like a hard budget (gateway/api/jobs_guard.py)
    binding = adm.job_hold is not None or binding_budget(ctx, list(adm.reservation.scopes)) is not None
    if source is UsageSource.UPSTREAM:  # an estimate (bytes / 4) passes them without anyone's error
        log.warning("request of key %s: the upstream reported %s, past its reservation (a prompt of at "
                    "most %d tokens, %d out)%s", adm.key_id, usage, adm.prompt_bound,
                    adm.max_output_tokens * adm.choices, "; metered at those bounds" if binding else "")
    if not binding:
        return usage
    written = min(usage.cache_write_tokens, prompt)
    return Usage(prompt, completion, min(usage.cached_tokens, prompt - written), written,
                 min(usage.reasoning_tokens, completion))


def _added(total: Usage, billed: Usage) -> Usage:
    prompt = max(0, total.prompt_tokens - billed.prompt_tokens)
    cached = min(prompt, max(0, total.cached_tokens - billed.cached_tokens))
    written = min(prompt - cached, max(0, total.cache_write_tokens - billed.cache_write_tokens))
    completion = max(0, total.completion_tokens - billed.completion_tokens)
    reasoning = min(completion, max(0, total.reasoning_tokens - billed.reasoning_tokens))
    return Usage(prompt, completion, cached, written, reasoning)


def _sum(a: Usage, b: Usage) -> Usage:
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                 a.cached_tokens + b.cached_tokens, a.cache_write_tokens + b.cache_write_tokens,
                 a.reasoning_tokens + b.reasoning_tokens)


def to_message(fact: RequestMetered, gateway_id: str) -> BusMessage:
    return BusMessage(id=fact.event_id, type=REQUEST_METERED, source=f"/meterline/gateway/{gateway_id}",
                      subject=f"key/{fact.key_id}", time=fact.occurred_at, data=fact.to_data(),
                      key=fact.key_id, schema_version=fact.schema_version)


async def publish_metered(bus: EventBus, fact: RequestMetered, gateway_id: str) -> None:
    """Returns once the bus has durably accepted the fact; the response may go out after."""
    await bus.publish(USAGE_TOPIC, [to_message(fact, gateway_id)])
