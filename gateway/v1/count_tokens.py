"""`POST /v1/messages/count_tokens`: Anthropic's token count, forwarded to the model server.

Not metered and not billed (it generates nothing), but the key, its model scope, its user's
grant and its requests-per-minute limit are checked as for any request, and errors are in
Anthropic's shape. An upstream that does not serve the route gets a clear 404.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from domain.ports.upstream import UpstreamTimeout, UpstreamUnavailable
from gateway import errors
from gateway.context import GatewayContext
from gateway.responses import JsonBytesResponse
from gateway.v1.admission import authenticate, credential, resolve_model
from gateway.v1.body import parse_json, read_body
from gateway.v1.dialects import anthropic_upstream_error
from gateway.v1.messages_api import error_response
from gateway.v1.refusals import rate_refusal, refused

router = APIRouter()


@router.post("/messages/count_tokens", summary="Count a message's input tokens (Anthropic); not billed")
async def count_tokens(request: Request) -> Response:
    ctx: GatewayContext = request.app.state.ctx
    headers, now = request.headers, ctx.clock.now()
    key = payload = None

    async def body() -> AsyncIterator[bytes]:
        return request.stream()

    try:
        key = authenticate(ctx, credential(headers.get("authorization"), headers.get("x-api-key")), now)
        payload = parse_json(await read_body(body, headers.get("content-length"), ctx.options.max_body_bytes))
        route, _ = resolve_model(ctx, key, payload, "messages", now)
        if not isinstance(payload.get("messages"), list):
            raise errors.bad_request("'messages' is required and must be a list of message objects",
                                     "messages")
        ok, reason, wait = ctx.rate_limiter.admit(str(key.id), time.monotonic(), key.rpm_limit, None, 0)
        if not ok:
            raise rate_refusal(errors.rate_limited(f"{reason} for this key; retry in {wait} s", wait),
                               key, reason, wait)
    except errors.GatewayError as exc:
        return error_response(refused(ctx.refusals, exc, key, payload, now))
    forwarded = orjson.dumps({**payload, "model": route.upstream_model})
    try:
        upstream = await ctx.upstream.post(route.upstream_url + "/messages/count_tokens", forwarded,
                                           ctx.options.upstream_timeout_s)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return error_response(errors.upstream_failed(f"the model server for '{route.name}' did not "
                                                     f"count the tokens ({exc}); retry later"))
    if upstream.status in (404, 405):
        return error_response(errors.not_found(f"the model server for '{route.name}' does not serve "
                                               "/v1/messages/count_tokens", code="not_served"))
    if upstream.status >= 400:
        return anthropic_upstream_error(upstream.status, upstream.body, route.name)
    try:
        counted = orjson.loads(upstream.body).get("input_tokens")
    except (orjson.JSONDecodeError, AttributeError):
        counted = None
    if type(counted) is not int:
        return error_response(errors.upstream_failed(f"the model server for '{route.name}' sent no "
                                                     "input_tokens count"))
    return JsonBytesResponse(orjson.dumps({"input_tokens": counted}))
