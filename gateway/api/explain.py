"""GET /api/admin/requests/{request_id}: why a /v1 request was refused, or what it was charged."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter

from domain.decisions import RefusalRecord
from domain.services.explain import explain
from gateway import errors
from gateway.api.deps import Admin, Ctx

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/requests/{request_id}", summary="Explain a /v1 request: its refusal, or its charge")
async def explain_request(request_id: str, ctx: Ctx, _: Admin) -> dict[str, Any]:
    try:
        request_id = str(UUID(request_id))
    except ValueError:
        raise errors.bad_request(f"{request_id[:80]!r} is not a request id: quote the UUID from the "
                                 "x-request-id header or the error's request_id",
                                 "request_id", code="invalid_request_id") from None
    queued = ctx.refusals.queued(request_id)
    if queued is not None:  # refused moments ago, not yet written
        return RefusalRecord(**queued).describe()
    found = await ctx.query(lambda: explain(request_id, ctx.refusals.store(), ctx.ledger, ctx.registry))
    if found is None:
        raise errors.not_found(
            f"no request {request_id} is known: neither a refusal record nor a metered fact has "
            "this id. Served requests reach the ledger a few seconds after they are answered; "
            "during a flood, refusals past 20 per key, rule and minute are counted, not recorded",
            code="request_not_found", param="request_id")
    return found
