"""One LLM call of a job, on the /v1 path's own machinery: the key authenticated, the request
admitted (model scope, grants, rate limits, the worst case reserved against the budgets of
key, user and team), forwarded, and metered with `v1.metering.meter` before the answer.

The job adds its own cap (`jobs_guard`), reserved after the budgets and released with them
when it refuses, and tags the metered fact with the job id and the call's `purpose` (the
fact's `purpose` label), which is how the ledger itemises the job's calls.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

import orjson
from starlette.responses import Response

from domain.keys import ApiKey
from domain.money import usd_text
from domain.ports.upstream import UpstreamTimeout, UpstreamUnavailable
from domain.services.job_states import JobState
from domain.services.ledger import PURPOSE_TAG
from domain.usage import RequestMetered
from gateway import errors
from gateway.api.deps import usd
from gateway.api.jobs_bodies import CallRequest
from gateway.api.jobs_desk import desk
from gateway.api.jobs_guard import Refusal
from gateway.context import GatewayContext
from gateway.responses import JsonBytesResponse
from gateway.v1.admission import ENDPOINT_PATH, Admitted, MustWait, admit, wait_for_reservations
from gateway.v1.dialects import DIALECTS
from gateway.v1.metering import meter
from gateway.v1.refusals import refused
from gateway.v1.tags import NO_TAGS
from gateway.v1.upstream_call import error_from_upstream, no_answer, upstream_body

CHAT = DIALECTS["chat"]


def default_model(ctx: GatewayContext, key: ApiKey) -> str:
    """The key's first allowed model; for a key allowing every model, the first chat model."""
    for model in key.models:
        if model != "*":
            return model
    chats = sorted(name for name, route in ctx.routes.items() if route.kind == "chat")
    if "*" in key.models and chats:
        return chats[0]
    raise errors.bad_request("this key allows no model; name one in 'model' or ask an admin to "
                             "allow one on the key", "model", code="missing_model")


async def job_call(ctx: GatewayContext, key: ApiKey, job: JobState, call: CallRequest) -> Response:
    """The call's answer and metering, or the error response the upstream's answer became."""
    started, now = time.perf_counter(), ctx.clock.now()
    payload: dict[str, Any] = {"model": call.model or default_model(ctx, key), "messages": call.messages}
    if call.temperature is not None:
        payload["temperature"] = call.temperature
    if call.max_tokens is not None:
        payload["max_tokens"] = call.max_tokens
    labels = MappingProxyType({PURPOSE_TAG: call.purpose}) if call.purpose else NO_TAGS
    try:
        try:
            adm = admit(ctx, "chat", payload, key, str(job.id), now, labels)
        except MustWait as waiting:
            adm = await wait_for_reservations(ctx, waiting)
        hold = desk(ctx).guard.reserve(str(job.id), job.max_cost, adm.reservation.amount)
        if isinstance(hold, Refusal):
            ctx.guard.release(adm.reservation)
            ctx.rate_limiter.correct(adm.key_id, adm.prompt_bound + adm.max_output_tokens, 0)
            raise job_refusal(job, hold, adm.reservation.amount)
    except errors.GatewayError as exc:
        raise refused(ctx.refusals, exc, key, payload, now) from None
    fact: RequestMetered | None = None
    try:
        fact, answer = await _forward(ctx, adm, started)
    except errors.GatewayError:
        raise
    except BaseException:
        if fact is None:
            ctx.guard.release(adm.reservation)
        raise
    finally:
        desk(ctx).guard.settle(hold, fact.event_id if fact else None, fact.cost if fact else 0)
    if isinstance(answer, Response):
        return answer
    # encoded here: FastAPI's generic encoding of a returned dict costs more than the call's metering
    return JsonBytesResponse(orjson.dumps({
        "response": _message(answer),
        "metadata": {"call_id": fact.request, "model": payload["model"], "purpose": call.purpose,
                     "prompt_tokens": fact.prompt_tokens, "completion_tokens": fact.completion_tokens,
                     "tokens_used": fact.prompt_tokens + fact.completion_tokens,
                     "latency_ms": fact.latency_ms, "cost_usd": usd(fact.cost)}}),
        headers={"x-request-id": fact.request})


async def _forward(ctx: GatewayContext, adm: Admitted, started: float
                   ) -> tuple[RequestMetered | None, dict[str, Any] | Response]:
    url = adm.route.upstream_url + ENDPOINT_PATH["chat"]
    try:
        upstream = await ctx.upstream.post(url, upstream_body(adm), ctx.options.upstream_timeout_s)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return None, await no_answer(ctx, adm, exc, started)
    if upstream.status >= 400:
        fact = await meter(ctx, adm, status=upstream.status, usage=None, started=started)
        return fact, error_from_upstream(adm, upstream.status, upstream.body)
    try:
        data = orjson.loads(upstream.body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        await meter(ctx, adm, status=502, usage=None, started=started)
        raise errors.upstream_failed(f"the model server for '{adm.route.name}' sent a body "
                                     "that is not a JSON object")
    fact = await meter(ctx, adm, status=upstream.status, usage=CHAT.usage(data), started=started,
                       generated_bytes=CHAT.text_bytes(data))
    return fact, data


def _message(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    return {"content": message.get("content"), "role": message.get("role", "assistant"),
            "finish_reason": first.get("finish_reason")}


def job_refusal(job: JobState, refusal: Refusal, worst_case: int) -> errors.GatewayError:
    if refusal.closing:
        return errors.GatewayError(409, f"job {job.id} is being completed or has ended; it takes no more "
                                   "calls: create a new job for more work",
                                   "invalid_request_error", "job_not_running")
    exc = errors.insufficient_quota(
        f"this call could pass the job's max_cost_usd ${usd_text(job.max_cost or 0)}: the job has "
        f"spent ${usd_text(refusal.spent)}, calls in flight hold ${usd_text(refusal.reserved)}, and "
        f"this call may cost up to ${usd_text(worst_case)} (its prompt and max_tokens). Send a "
        "smaller max_tokens or prompt, or create the job with a larger max_cost_usd")
    exc.code = "job_budget_exceeded"
    exc.rule = "job_max_cost"
    exc.details = {"job_id": str(job.id), "max_cost": job.max_cost, "spent": refusal.spent,
                   "reserved": refusal.reserved, "requested": worst_case}
    return exc
