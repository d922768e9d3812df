"""The /v1 surface: OpenAI's chat/completions, completions, embeddings, responses and models,
and Anthropic's messages; every one of them admitted, forwarded and metered by `serve`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway import errors
from gateway.context import GatewayContext
from gateway.v1 import count_tokens, stored_responses
from gateway.v1.admission import (
    ENDPOINT_PATH,
    MustWait,
    admit,
    authenticate,
    credential,
    wait_for_reservations,
)
from gateway.v1.body import BodySource, job_of, parse_json, read_body
from gateway.v1.dialects import DIALECTS
from gateway.v1.job_header import check_job, hold_for_job
from gateway.v1.refusals import refused
from gateway.v1.tags import tags_of
from gateway.v1.upstream_call import call_once, call_streaming, upstream_body

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
router.include_router(stored_responses.router)
router.include_router(count_tokens.router)
OPENAPI_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["model"], "additionalProperties": True,
               "properties": {"model": {"type": "string"}}}}}}}


async def handle(request: Request, endpoint: str) -> Response:
    """The FastAPI route's entry (documented in /docs); the ASGI fast path calls `serve`."""
    headers = request.headers
    return await serve(request.app.state.ctx, endpoint,
                       credential(headers.get("authorization"), headers.get("x-api-key")),
                       headers.get("x-meterline-job"), headers.get("content-length"),
                       partial(_stream_of, request), headers.get("x-meterline-tags"))


async def _stream_of(request: Request) -> AsyncIterator[bytes]:
    return request.stream()


async def serve(ctx: GatewayContext, endpoint: str, authorization: str | None, job: str | None,
                content_length: str | None, body: BodySource, tags: str | None = None) -> Response:
    """One /v1 request: admit, forward, meter, answer. Errors come back as responses, in the
    shape of the endpoint's API (dialects.py)."""
    started = time.perf_counter()
    now = ctx.clock.now()
    key = payload = None
    try:
        key = authenticate(ctx, authorization, now)
        payload = parse_json(await read_body(body, content_length, ctx.options.max_body_bytes))
        if "stream" in payload and payload["stream"] is None:  # OpenAI's schema allows null: not streamed
            del payload["stream"]
        stream = payload.get("stream", False)
        if not isinstance(stream, bool):
            raise errors.bad_request("'stream' must be true or false", "stream")
        if endpoint == "embeddings" and stream:
            raise errors.bad_request("embeddings cannot be streamed", "stream")
        labels = tags_of(tags, payload)
        job_id = job_of(job)
        on_job = await check_job(ctx, key, job_id) if job_id is not None else None
        try:
            adm = admit(ctx, endpoint, payload, key, job_id, now, labels)
        except MustWait as waiting:
            adm = await wait_for_reservations(ctx, waiting)
        if on_job is not None:
            adm.job_hold = hold_for_job(ctx, on_job, adm)
    except errors.GatewayError as exc:
        return DIALECTS[endpoint].render(refused(ctx.refusals, exc, key, payload, now))
    url = adm.route.upstream_url + ENDPOINT_PATH[endpoint]
    try:
        body = upstream_body(adm)
        if stream:
            return await call_streaming(ctx, adm, url, body, started)
        return await call_once(ctx, adm, url, body, started)
    except errors.GatewayError as exc:
        return DIALECTS[endpoint].render(exc)
    except BaseException:
        ctx.guard.release(adm.reservation)
        if adm.job_hold is not None:
            adm.job_hold(None, 0, adm.reservation.amount, True)
        raise


@router.post("/chat/completions", openapi_extra=OPENAPI_BODY, summary="Create a chat completion")
async def chat_completions(request: Request) -> Response:
    return await handle(request, "chat")


@router.post("/completions", openapi_extra=OPENAPI_BODY, summary="Create a completion")
async def completions(request: Request) -> Response:
    return await handle(request, "completions")


@router.post("/embeddings", openapi_extra=OPENAPI_BODY, summary="Create embeddings")
async def embeddings(request: Request) -> Response:
    return await handle(request, "embeddings")


@router.post("/responses", openapi_extra=OPENAPI_BODY, summary="Create a model response (OpenAI Responses)")
async def responses(request: Request) -> Response:
    return await handle(request, "responses")


@router.post("/messages", openapi_extra=OPENAPI_BODY, summary="Create a message (Anthropic Messages)")
async def messages(request: Request) -> Response:
    return await handle(request, "messages")


@router.get("/models", summary="List the models this key and its user's grant allow, and their APIs")
async def list_models(request: Request) -> Response:
    ctx: GatewayContext = request.app.state.ctx
    headers = request.headers
    try:
        key = authenticate(ctx, credential(headers.get("authorization"), headers.get("x-api-key")))
    except errors.GatewayError as exc:
        return exc.response()
    granted = ctx.registry_view.granted_models(key.user_id)  # None: the grant allows every model
    # OpenAI's fields, Anthropic's (type, display_name, created_at) and the APIs each speaks
    data = [{"id": book.model, "object": "model", "created": int(book.created_on.timestamp()),
             "owned_by": "meterline", "type": "model", "display_name": book.model,
             "created_at": book.created_on.isoformat(),
             "apis": [api for api in ENDPOINT_PATH if api in ctx.routes[book.model].apis]}
            for book in ctx.registry_view.models()
            if book.enabled and book.model in ctx.routes and key.allows_model(book.model)
            and (granted is None or book.model in granted)]
    return Response(orjson.dumps({"object": "list", "data": sorted(data, key=lambda m: m["id"])}),
                    media_type="application/json")
