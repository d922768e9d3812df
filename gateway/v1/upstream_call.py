"""Calling the model server for an admitted request: the body it is sent, and its answer
metered before it is relayed (whole, or as a stream by `streaming.relay`)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from domain.ports.upstream import UpstreamTimeout, UpstreamUnavailable
from gateway import errors
from gateway.context import GatewayContext
from gateway.responses import JsonBytesResponse
from gateway.v1 import messages_api, responses_api
from gateway.v1.admission import Admitted
from gateway.v1.dialects import DIALECTS, anthropic_upstream_error
from gateway.v1.metering import StreamBill, meter
from gateway.v1.sse_response import SseResponse
from gateway.v1.streaming import relay

API_FIELDS = {"responses": responses_api.upstream_fields, "messages": messages_api.upstream_fields}


def upstream_body(adm: Admitted) -> bytes:
    """The client's request with the upstream model name, a hard output cap and default stops."""
    body = dict(adm.payload)
    body["model"] = adm.route.upstream_model
    fields = API_FIELDS.get(adm.endpoint)
    if fields is not None:
        fields(body, adm.max_output_tokens, adm.route)
    elif adm.endpoint != "embeddings":
        body.pop("max_completion_tokens", None)
        body["max_tokens"] = adm.max_output_tokens  # the reservation covers no more than this
        if adm.route.stop and body.get("stop") is None:
            body["stop"] = list(adm.route.stop)
        if body.get("stream") is True:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
    return orjson.dumps(body)


async def call_once(ctx: GatewayContext, adm: Admitted, url: str, body: bytes, started: float) -> Response:
    try:
        upstream = await ctx.upstream.post(url, body, ctx.options.upstream_timeout_s)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return await no_answer(ctx, adm, exc, started)
    if upstream.status >= 400:
        await meter(ctx, adm, status=upstream.status, usage=None, started=started)
        return error_from_upstream(adm, upstream.status, upstream.body)
    dialect = DIALECTS[adm.endpoint]
    try:
        data: dict[str, Any] = orjson.loads(upstream.body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        await meter(ctx, adm, status=502, usage=None, started=started)
        raise errors.upstream_failed(f"the model server for '{adm.route.name}' sent a body "
                                     "that is not a JSON object") from None
    usage = dialect.usage(data)
    # generated text is read only to estimate a usage the upstream did not report
    fact = await meter(ctx, adm, status=upstream.status, usage=usage, started=started,
                       generated_bytes=0 if usage is not None else dialect.text_bytes(data))
    if "model" in data:
        data["model"] = adm.payload["model"]
    if adm.owner is not None:  # a response the upstream keeps: its id is this key's alone
        adm.owner.seal_answer(data)
    # The id `meterline explain` and GET /api/admin/requests/{id} know the request by.
    return JsonBytesResponse(orjson.dumps(data), upstream.status, {"x-request-id": fact.event_id})


async def call_streaming(ctx: GatewayContext, adm: Admitted, url: str, body: bytes,
                         started: float) -> Response:
    try:
        upstream = await ctx.upstream.stream(url, body, ctx.options.upstream_timeout_s)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return await no_answer(ctx, adm, exc, started)
    if upstream.status >= 400:
        raw = await upstream.read()
        await upstream.close()
        await meter(ctx, adm, status=upstream.status, usage=None, started=started, stream=True)
        return error_from_upstream(adm, upstream.status, raw)
    bill = StreamBill()  # made here so the answer's head can carry the id its parts are metered under
    reader = DIALECTS[adm.endpoint].events(adm.payload)
    if adm.owner is not None:
        reader.owner = adm.owner
    return SseResponse(relay(ctx, adm, upstream, started, bill, reader), bill.request_id)


async def no_answer(ctx: GatewayContext, adm: Admitted, exc: Exception, started: float) -> Response:
    """The model server timed out or could not be reached: metered (nothing generated), 504 or 502."""
    timeout = isinstance(exc, UpstreamTimeout)
    status = 504 if timeout else 502
    ctx.metrics.upstream_error(adm.route.name, "timeout" if timeout else "unavailable")
    await meter(ctx, adm, status=status, usage=None, started=started)
    render = DIALECTS[adm.endpoint].render
    if timeout:
        return render(errors.upstream_timeout(f"the model server for '{adm.route.name}' did not answer "
                                              f"within {ctx.options.upstream_timeout_s:g} s; retry"))
    return render(errors.upstream_failed(f"the model server for '{adm.route.name}' is unreachable "
                                         f"({exc}); retry later"))


def error_from_upstream(adm: Admitted, status: int, body: bytes) -> Response:
    if DIALECTS[adm.endpoint].anthropic:
        return anthropic_upstream_error(status, body, adm.route.name)
    return upstream_error(status, body, adm.route.name)


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
