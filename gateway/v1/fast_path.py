"""An ASGI fast path for the /v1 POST endpoints, in front of the FastAPI app.

FastAPI's routing and middleware stack cost more CPU per request than the whole metered
proxy step (docs/benchmarks.md). The same handler (`v1.routes.serve`) answers both ways;
the FastAPI routes remain for the OpenAPI documentation and any other method or path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from gateway import errors
from gateway.access_middleware import record_v1
from gateway.context import GatewayContext
from gateway.responses import JsonBytesResponse
from gateway.v1.admission import credential
from gateway.v1.dialects import DIALECTS
from gateway.v1.direct_write import write_json
from gateway.v1.routes import serve

log = logging.getLogger(__name__)
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
             "/v1/embeddings": "embeddings", "/v1/responses": "responses", "/v1/messages": "messages"}
WANTED = {b"authorization": "authorization", b"x-meterline-job": "job",
          b"content-length": "content_length", b"x-meterline-tags": "tags", b"x-api-key": "x_api_key"}


class V1FastPath:
    def __init__(self, app: Any, ctx: GatewayContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        endpoint = ENDPOINTS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found: dict[str, str] = {}
        for name, value in scope["headers"]:
            field = WANTED.get(name)
            if field is not None:
                found[field] = value.decode("latin-1")
        authorization = credential(found.get("authorization"), found.get("x_api_key"))
        try:
            response = await serve(self.ctx, endpoint, authorization, found.get("job"),
                                   found.get("content_length"), partial(_body, receive),
                                   found.get("tags"))
        except Exception:  # what the FastAPI app's catch-all handler does for every other route
            log.exception("unhandled error on %s", scope["path"])
            response = DIALECTS[endpoint].render(errors.GatewayError(
                500, "internal error; it was logged, please retry or report it", "api_error",
                "internal_error"))
        if response.status_code in (401, 403):
            record_v1(self.ctx, response.status_code, scope, authorization)
        if type(response) is not JsonBytesResponse or not write_json(send, response):
            await response(scope, receive, send)


async def _body(receive: Any) -> bytes | AsyncIterator[bytes]:
    """The whole body when it came in one message (the usual case), else an iterator of its chunks."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        return message.get("body", b"")
    return _chunks(message, receive)


async def _chunks(first: dict, receive: Any) -> AsyncIterator[bytes]:
    message = first
    while message["type"] != "http.disconnect":
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
        message = await receive()
