"""The FastAPI application factory: routes only, every dependency comes in a GatewayContext."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from domain.errors import DomainError
from gateway import errors
from gateway.access_middleware import AccessAuditMiddleware
from gateway.api import routes as management
from gateway.context import GatewayContext
from gateway.request_guard import RequestGuard
from gateway.v1.routes import router as v1_router

log = logging.getLogger(__name__)
SHOWN = 5  # validation problems listed in an error, at most


def create_app(ctx: GatewayContext,
               lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None) -> FastAPI:
    """Builds the gateway app around a context; `lifespan` starts and stops what it needs."""

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        # access events are appended by this task, never by the request that caused them
        stop = asyncio.Event()
        drain = asyncio.ensure_future(ctx.access_audit.run(stop))
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            stop.set()
            await drain

    # No redirect from '/v1/models/' to '/v1/models': OpenAI clients do not follow an empty
    # 307 on a POST; such a path is a 404 in the error shape that names the right one.
    app = FastAPI(title="Meterline", version="0.1.0", lifespan=_lifespan, redirect_slashes=False,
                  description="Metered OpenAI-compatible gateway and billing API.")
    app.state.ctx = ctx
    app.include_router(v1_router)
    app.include_router(management.router)

    @app.get("/healthz", tags=["operations"], summary="Liveness: answers once the gateway serves")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=PlainTextResponse)
    async def metrics() -> Response:
        return PlainTextResponse(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    install_error_handlers(app)
    app.add_middleware(RequestGuard, ctx=ctx)
    app.add_middleware(AccessAuditMiddleware, ctx=ctx)  # outside the guard: it sees the guard's 401s
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error a client sees is a JSON body saying what was wrong; never a stack trace."""

    @app.exception_handler(errors.GatewayError)
    async def gateway_error(_: Request, exc: errors.GatewayError) -> Response:
        return exc.response()

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> Response:
        status = 404 if type(exc).__name__ == "NotFoundError" else 409
        return errors.GatewayError(status, str(exc), "invalid_request_error",
                                   "not_found" if status == 404 else "conflict").response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        found = exc.errors()
        if any(e["type"] == "json_invalid" for e in found):
            where = next(e for e in found if e["type"] == "json_invalid")
            reason = (where.get("ctx") or {}).get("error", "not JSON")
            return errors.bad_request(f"the body is not valid JSON ({reason}, at character "
                                      f"{where['loc'][-1]}); send one JSON object", None,
                                      code="invalid_json").response()
        fields = {".".join(str(p) for p in e["loc"][1:]) or "body" for e in found}
        # The first few problems only: a body of 100,000 unknown fields must not get an answer
        # ten times its size.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])[:100] or 'body'}: "
                             f"{e['msg'].removeprefix('Value error, ')[:300]}" for e in found[:SHOWN])
        if len(found) > SHOWN:
            problems += f"; and {len(found) - SHOWN} more"
        return errors.bad_request(f"invalid request: {problems}",
                                  fields.pop()[:100] if len(fields) == 1 else None,
                                  code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        path = request.url.path if request.url.path.isprintable() else repr(request.url.path)
        if exc.status_code == 404 and message == "Not Found":
            message = f"there is no {request.method} {path}"
            if len(path) > 1 and path.endswith("/"):
                message += f"; paths take no trailing slash: call {path.rstrip('/')}"
            message += "; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {path}; see /docs for the API"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            message = ("the body could not be read as JSON (it is malformed, or nested too deeply); "
                       "send one JSON object")
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                       "param": None, "code": f"http_{exc.status_code}"}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer and uvicorn then drops the connection, so
        # the answer says so: a client must not send its next request on it.
        log.exception("unhandled error")
        return errors.GatewayError(500, "internal error; it was logged, please retry or report it",
                                   "api_error", "internal_error",
                                   headers={"connection": "close"}).response()
