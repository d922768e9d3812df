"""The stored-response routes of the Responses API, answered with a clear 404.

Meterline keeps no conversation state (gateway/v1/responses_api.py sends `store` false), so
there is never a response to retrieve, delete, cancel or list the input of. Toward a model server
that keeps them (`upstream_keeps_state`) these routes are not forwarded either: one account there
holds every key's responses, and only `previous_response_id` checks whose an id is (the seal of
responses_api.Owner). The key is still checked first: an unauthenticated caller learns nothing,
not even that the route exists.
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
        f"no stored response '{errors.shown(response_id)}': this gateway stores no responses and "
        "serves none a model server keeps, so they cannot be retrieved, deleted or cancelled here; "
        "keep the output on your side and send earlier turns again in 'input' (or, where the model "
        "server keeps them, name the response in 'previous_response_id')",
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
