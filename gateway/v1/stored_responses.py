"""The stored-response routes of the Responses API, answered with a clear 404.

Meterline keeps no conversation state (gateway/v1/responses_api.py sends `store` false), so
there is never a response to retrieve, delete, cancel or list the input of. The key is still
checked first: an unauthenticated caller learns nothing, not even that the route exists.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway import errors
from gateway.context import GatewayContext
from gateway.v1.admission import authenticate, credential

router = APIRouter()


async def _not_stored(request: Request, response_id: str) -> Response:
    ctx: GatewayContext = request.app.state.ctx
    headers = request.headers
    try:
        authenticate(ctx, credential(headers.get("authorization"), headers.get("x-api-key")))
    except errors.GatewayError as exc:
        return exc.response()
    return errors.not_found(
        f"no stored response '{response_id[:100]}': this gateway stores no responses (requests "
        "are forwarded with store=false), so they cannot be retrieved, deleted or cancelled; keep "
        "the output on your side and send earlier turns again in 'input'",
        code="response_not_found", param="response_id").response()


@router.get("/responses/{response_id}", summary="Retrieve a response: never stored here, so 404")
async def retrieve_response(request: Request, response_id: str) -> Response:
    return await _not_stored(request, response_id)


@router.delete("/responses/{response_id}", summary="Delete a response: never stored here, so 404")
async def delete_response(request: Request, response_id: str) -> Response:
    return await _not_stored(request, response_id)


@router.post("/responses/{response_id}/cancel", summary="Cancel a background response: 404")
async def cancel_response(request: Request, response_id: str) -> Response:
    return await _not_stored(request, response_id)


@router.get("/responses/{response_id}/input_items", summary="List a response's input: 404")
async def list_input_items(request: Request, response_id: str) -> Response:
    return await _not_stored(request, response_id)
