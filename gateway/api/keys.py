"""API keys: create (secret shown once), list, rotate, revoke. Users act on their own keys.

A new key's models and budget are held to its user's grant (`gateway.api.grants`).
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query

from domain.credentials import new_secret
from domain.keys import ApiKey
from domain.quota_policy import BudgetPolicy, Scope
from domain.services.acting import as_actor
from gateway import errors
from gateway.api.deps import Caller, Ctx, Principal, acting_user, usd, usd_to_nanos
from gateway.api.grants import held_to_grant
from gateway.api.schemas import NewKey, RotateBody

router = APIRouter(prefix="/api/keys", tags=["keys"])


def key_view(ctx: Ctx, key: ApiKey) -> dict:
    snap = ctx.guard.snapshot((Scope.KEY, str(key.id)))
    policy = snap["policy"] if snap else None
    spent = (snap["ledger_spent"] + snap["unacknowledged"]) if snap else 0
    last_used = ctx.registry_view.last_key_use.get(key.id)
    return {"id": str(key.id), "name": key.name, "description": key.description,
            "prefix": key.prefix, "user_id": key.user_id, "team_id": key.team_id,
            "models": key.models, "status": str(key.status_at(ctx.clock.now())),
            "created_at": key.issued_at.isoformat(),
            "last_used_at": last_used.isoformat() if last_used else None,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "rpm_limit": key.rpm_limit, "tpm_limit": key.tpm_limit,
            "budget_usd": usd(policy["limit"]) if policy else None,
            "budget_mode": policy["mode"] if policy else None,
            "budget_used_usd": usd(spent)}


def own_key(ctx: Ctx, who: Principal, key_id: str) -> ApiKey:
    try:
        key = ctx.registry_view.key(UUID(key_id))
    except ValueError:
        key = None
    if key is None or (not who.is_admin and key.user_id != who.user_id):
        raise errors.not_found(f"key {key_id} does not exist", code="key_not_found", param="id")
    return key


@router.post("", status_code=201, summary="Create a key; the secret is in this response only")
async def create_key(body: NewKey, ctx: Ctx, who: Caller) -> dict:
    user_id = acting_user(who, body.user_id)
    user = ctx.registry_view.user(user_id)
    if user is None or not user.active:
        raise errors.not_found(f"user {user_id!r} does not exist or is offboarded",
                               code="user_not_found", param="user_id")
    unknown = [m for m in body.models if m != "*" and ctx.registry_view.model(m) is None]
    if unknown:
        raise errors.bad_request(f"unknown models {unknown}; see GET /v1/models", "models",
                                 code="model_not_found")
    expires_at = body.expires_at  # in UTC and within the supported years (schemas.Instant)
    if expires_at is not None and expires_at <= ctx.clock.now():
        raise errors.bad_request("'expires_at' must be in the future", "expires_at")
    requested = (BudgetPolicy(limit=usd_to_nanos(body.budget_usd, "budget_usd"), mode=body.budget_mode)
                 if body.budget_usd is not None else None)
    policy = held_to_grant(ctx, user_id, body.models, requested)
    secret = new_secret()
    key = await ctx.command(as_actor(who.actor, ctx.registry.issue_key), user_id, body.name, body.models,
                            ctx.hmac(secret), secret, body.description, expires_at,
                            body.rpm_limit, body.tpm_limit)
    if policy is not None:
        await ctx.command(as_actor(who.actor, ctx.ledger.set_budget), Scope.KEY, str(key.id), policy)
    return {**key_view(ctx, key), "key": secret,
            "note": "store this key now: it is shown only once"}


@router.get("", summary="List keys (metadata only, never secrets)")
async def list_keys(ctx: Ctx, who: Caller, user_id: str | None = Query(default=None)) -> dict:
    if who.is_admin and user_id is None:
        keys = ctx.registry_view.api_keys()
    else:
        keys = ctx.registry_view.api_keys(acting_user(who, user_id))
    keys.sort(key=lambda k: k.issued_at)
    return {"object": "list", "data": [key_view(ctx, k) for k in keys]}


@router.post("/{key_id}/rotate", summary="Rotate a key's secret; the new one is shown once")
async def rotate_key(key_id: str, ctx: Ctx, who: Caller, body: RotateBody | None = None) -> dict:
    key = own_key(ctx, who, key_id)
    secret = new_secret()
    grace = body.grace_seconds if body else 0
    key = await ctx.command(as_actor(who.actor, ctx.registry.rotate_key), key.id, ctx.hmac(secret), secret,
                            grace)
    return {**key_view(ctx, key), "key": secret,
            "old_key_valid_until": key.previous_valid_until.isoformat()
            if key.previous_valid_until else None}


@router.delete("/{key_id}", summary="Revoke a key now")
async def revoke_key(key_id: str, ctx: Ctx, who: Caller) -> dict:
    key = own_key(ctx, who, key_id)
    reason = f"revoked by {who.user_id or 'admin token'}"
    key = await ctx.command(as_actor(who.actor, ctx.registry.revoke_key), key.id, reason)
    return key_view(ctx, key)
