"""In-app notices (posted by alerts): `GET /api/me/notices` (unread first), and acknowledging one."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import errors
from gateway.api.alerts_service import alerts_of
from gateway.api.deps import Caller, Ctx, Principal

router = APIRouter(prefix="/api/me/notices", tags=["notices"])
MAX_NOTICE_ID = 64  # notice ids are delivery UUIDs: anything longer is not one of them


def _user(who: Principal) -> str:
    if who.user_id is None:
        raise errors.bad_request("the admin token is not a user and has no notices; use a user token",
                                 code="user_required")
    return who.user_id


@router.get("", summary="Your notices, unread first")
async def list_notices(ctx: Ctx, who: Caller) -> dict:
    notices = await ctx.query(alerts_of(ctx).notices, _user(who))
    unread = sum(1 for n in notices if n["acknowledged_at"] is None)
    return {"object": "list", "unread": unread, "data": notices}


@router.post("/{notice_id}/ack", summary="Mark one of your notices read")
async def acknowledge(notice_id: str, ctx: Ctx, who: Caller) -> dict:
    user_id = _user(who)
    found = len(notice_id) <= MAX_NOTICE_ID and await ctx.command(alerts_of(ctx).acknowledge, user_id,
                                                                  notice_id)
    if not found:
        raise errors.not_found(f"notice {notice_id[:MAX_NOTICE_ID]!r} does not exist",
                               code="notice_not_found", param="id")
    return {"id": notice_id, "acknowledged": True}
