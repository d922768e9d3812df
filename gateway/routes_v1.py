"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from domain.ports import UpstreamTimeout, UpstreamUnavailable
from gateway import errors
from gateway.admission import Admitted, admit, authenticate, parse_json
from gateway.context import GatewayContext
from gateway.forward import (
    UPSTREAM_PATH,
    _choice_text_bytes,
    meter,
    parse_usage,
    upstream_body,
    upstream_error,
)
from gateway.responses import JsonBytesResponse
from gateway.streaming import relay

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
OPENAPI_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["model"], "additionalProperties": True,
               "properties": {"model": {"type": "string"}}}}}}}


BodySource = Callable[[], Awaitable[bytes | AsyncIterator[bytes]]]


async def read_body(source: BodySource, declared: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes.

    `source` starts reading only when called, after the key and the declared length were
    checked, so a refused request is answered without asking for its body (no "100
    Continue"). It gives the whole body when the server already holds it, else its chunks.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks = await source()
    if isinstance(chunks, bytes):
        if len(chunks) > limit:
            raise errors.too_large(limit)
        return chunks
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def job_of(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(UUID(raw))
    except ValueError:
        raise errors.bad_request(f"header X-Meterline-Job must be a job id (UUID) from "
                                 f"POST /api/jobs, got {raw!r}", code="invalid_job") from None


async def handle(request: Request, endpoint: str) -> Response:
    """The FastAPI route's entry (documented in /docs); the ASGI fast path calls `serve`."""
    headers = request.headers
    return await serve(request.app.state.ctx, endpoint, headers.get("authorization"),
                       headers.get("x-meterline-job"), headers.get("content-length"),
                       partial(_stream_of, request))


async def _stream_of(request: Request) -> AsyncIterator[bytes]:
    return request.stream()


async def serve(ctx: GatewayContext, endpoint: str, authorization: str | None, job: str | None,
                content_length: str | None, body: BodySource) -> Response:
    """One /v1 request: admit, forward, meter, answer. Errors come back as responses."""
    started = time.perf_counter()
    now = ctx.clock.now()
    try:
        key = authenticate(ctx, authorization, now)
        payload = parse_json(await read_body(body, content_length, ctx.options.max_body_bytes))
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise errors.bad_request("'stream' must be true or false", "stream")
        if endpoint == "embeddings" and stream:
            raise errors.bad_request("embeddings cannot be streamed", "stream")
        adm = admit(ctx, endpoint, payload, key, job_of(job), now)
    except errors.GatewayError as exc:
        return exc.response()
    url = adm.route.upstream_url + UPSTREAM_PATH[endpoint]
    try:
        body = upstream_body(adm)
        if stream:
            return await _stream(ctx, adm, url, body, started)
        return await _once(ctx, adm, url, body, started)
    except errors.GatewayError as exc:
        return exc.response()
    except BaseException:
        ctx.guard.release(adm.reservation)
        raise


async def _once(ctx: GatewayContext, adm: Admitted, url: str, body: bytes, started: float) -> Response:
    try:
        upstream = await ctx.upstream.post(url, body, ctx.options.upstream_timeout_s)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return await _failed(ctx, adm, exc, started)
    if upstream.status >= 400:
        await meter(ctx, adm, status=upstream.status, usage=None, started=started)
        return upstream_error(upstream.status, upstream.body, adm.route.name)
    try:
        data: dict[str, Any] = orjson.loads(upstream.body)
    except orjson.JSONDecodeError:
        await meter(ctx, adm, status=502, usage=None, started=started)
        raise errors.upstream_failed(f"the model server for '{adm.route.name}' sent a body "
                                     "that is not JSON") from None
    usage = parse_usage(data.get("usage"))
    await meter(ctx, adm, status=upstream.status, usage=usage, started=started,
                generated_bytes=_choice_text_bytes(data))
    if "model" in data:
        data["model"] = adm.payload["model"]
    return JsonBytesResponse(orjson.dumps(data), upstream.status)


async def _stream(ctx: GatewayContext, adm: Admitted, url: str, body: bytes, started: float) -> Response:
    try:
        upstream = await ctx.upstream.stream(url, body, ctx.options.upstream_timeout_s)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        return await _failed(ctx, adm, exc, started)
    if upstream.status >= 400:
        raw = await upstream.read()
        await upstream.close()
        await meter(ctx, adm, status=upstream.status, usage=None, started=started, stream=True)
        return upstream_error(upstream.status, raw, adm.route.name)
    return StreamingResponse(relay(ctx, adm, upstream, started), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def _failed(ctx: GatewayContext, adm: Admitted, exc: Exception, started: float) -> Response:
    timeout = isinstance(exc, UpstreamTimeout)
    status = 504 if timeout else 502
    ctx.metrics.upstream_error(adm.route.name, "timeout" if timeout else "unavailable")
    await meter(ctx, adm, status=status, usage=None, started=started)
    if timeout:
        return errors.upstream_timeout(f"the model server for '{adm.route.name}' did not answer "
                                       f"within {ctx.options.upstream_timeout_s:g} s; retry").response()
    return errors.upstream_failed(f"the model server for '{adm.route.name}' is unreachable "
                                  f"({exc}); retry later").response()


@router.post("/chat/completions", openapi_extra=OPENAPI_BODY, summary="Create a chat completion")
async def chat_completions(request: Request) -> Response:
    return await handle(request, "chat")


@router.post("/completions", openapi_extra=OPENAPI_BODY, summary="Create a completion")
async def completions(request: Request) -> Response:
    return await handle(request, "completions")


@router.post("/embeddings", openapi_extra=OPENAPI_BODY, summary="Create embeddings")
async def embeddings(request: Request) -> Response:
    return await handle(request, "embeddings")


@router.get("/models", summary="List the models this key may use")
async def list_models(request: Request) -> Response:
    ctx: GatewayContext = request.app.state.ctx
    try:
        key = authenticate(ctx, request.headers.get("authorization"))
    except errors.GatewayError as exc:
        return exc.response()
    data = [{"id": book.model, "object": "model", "created": int(book.created_on.timestamp()),
             "owned_by": "meterline"}
            for book in ctx.directory.models()
            if book.enabled and book.model in ctx.routes and key.allows_model(book.model)]
    return Response(orjson.dumps({"object": "list", "data": sorted(data, key=lambda m: m["id"])}),
                    media_type="application/json")
