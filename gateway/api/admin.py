"""Admin endpoints: teams, users, user tokens, offboarding, budgets (grants: `grants.py`)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from starlette.responses import JSONResponse

from domain.credentials import TOKEN_PREFIX, new_secret
from domain.quota_policy import BudgetPolicy, Scope
from domain.services.acting import as_actor
from gateway import errors
from gateway.api.deps import Admin, Ctx, usd, usd_to_nanos
from gateway.api.grants import check_key_budget
from gateway.api.schemas import BudgetBody, NewTeam, NewUser

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.post("/teams", status_code=201, summary="Create or update a team")
async def create_team(body: NewTeam, ctx: Ctx, who: Admin) -> dict:
    team = await ctx.command(as_actor(who.actor, ctx.registry.create_team), body.team_id, body.name,
                             body.cost_center)
    return {"team_id": team.team_id, "name": team.name, "cost_center": team.cost_center}


@router.post("/users", status_code=201, summary="Create or update a user")
async def create_user(body: NewUser, ctx: Ctx, who: Admin) -> dict:
    if body.team_id is not None and ctx.registry_view.team(body.team_id) is None:
        raise errors.not_found(f"team {body.team_id!r} does not exist; create it with "
                               "POST /api/admin/teams first", code="team_not_found", param="team_id")
    user = await ctx.command(as_actor(who.actor, ctx.registry.register_user), body.user_id, body.role,
                             body.team_id, body.email)
    return {"user_id": user.user_id, "team_id": user.team_id, "role": str(user.role),
            "email": user.email, "active": user.active}


@router.post("/users/{user_id}/tokens", status_code=201,
             summary="Issue a user token (shown once)")
async def issue_token(user_id: str, ctx: Ctx, who: Admin) -> dict:
    token = new_secret(TOKEN_PREFIX)
    await ctx.command(as_actor(who.actor, ctx.registry.issue_user_token), user_id, ctx.hmac(token))
    return {"user_id": user_id, "token": token,
            "note": "store this token now: it is shown only once"}


@router.delete("/users/{user_id}", summary="Offboard a user: deactivate and revoke every key")
async def offboard(user_id: str, ctx: Ctx, who: Admin) -> dict:
    reason = f"offboarded by {who.user_id or 'admin token'}"
    revoked = await ctx.command(as_actor(who.actor, ctx.registry.deactivate_user), user_id, reason)
    return {"user_id": user_id, "active": False, "revoked_keys": [str(k) for k in revoked]}


def _scope(scope: str, scope_id: str, ctx: Ctx) -> Scope:
    try:
        parsed = Scope(scope)
    except ValueError:
        raise errors.bad_request(f"unknown scope {scope!r}; use key, user or team", "scope") from None
    exists = {Scope.KEY: lambda: _key_exists(ctx, scope_id),
              Scope.USER: lambda: ctx.registry_view.user(scope_id),
              Scope.TEAM: lambda: ctx.registry_view.team(scope_id)}[parsed]()
    if not exists:
        raise errors.not_found(f"{scope} {scope_id!r} does not exist", code=f"{scope}_not_found",
                               param="id")
    return parsed


def _key_exists(ctx: Ctx, key_id: str) -> bool:
    try:
        return ctx.registry_view.key(UUID(key_id)) is not None
    except ValueError:
        return False


@router.put("/budgets/{scope}/{scope_id}", summary="Set a budget for a key, user or team")
async def set_budget(scope: str, scope_id: str, body: BudgetBody, ctx: Ctx, who: Admin) -> dict:
    parsed = _scope(scope, scope_id, ctx)
    policy = BudgetPolicy(limit=usd_to_nanos(body.limit_usd, "limit_usd"), period=body.period,
                          mode=body.mode, grace_percent=body.grace_percent,
                          grace_hours=body.grace_hours)
    if parsed is Scope.KEY:  # a key's budget is held to its user's grant, whoever sets it
        check_key_budget(ctx, ctx.registry_view.key(UUID(scope_id)).user_id, policy)
    await ctx.command(as_actor(who.actor, ctx.ledger.set_budget), parsed, scope_id, policy)
    return budget_view(ctx, parsed, scope_id)


@router.get("/budgets/{scope}/{scope_id}",
            summary="A budget's counters: spent, unacknowledged, reserved, policy")
async def get_budget(scope: str, scope_id: str, ctx: Ctx, _: Admin) -> JSONResponse:
    return JSONResponse(budget_view(ctx, _scope(scope, scope_id, ctx), scope_id))


def budget_view(ctx: Ctx, scope: Scope, scope_id: str) -> dict:
    snap = ctx.guard.snapshot((scope, scope_id))
    if snap is None or snap["policy"] is None:
        return {"scope": str(scope), "id": scope_id, "budget": None}
    policy = snap["policy"]
    spent = snap["ledger_spent"] + snap["unacknowledged"]
    return {"scope": str(scope), "id": scope_id, "limit_usd": usd(policy["limit"]),
            "period": policy["period"], "mode": policy["mode"],
            "grace_percent": policy["grace_percent"], "grace_hours": policy["grace_hours"],
            "policy_version": policy["version"], "period_start": snap["period_start"],
            "spent_usd": usd(spent), "reserved_usd": usd(snap["reserved"]),
            "remaining_usd": usd(max(0, policy["limit"] - spent))}
