"""Grants: the models and key budgets an admin allows each user and team (issue 9, item 8).

Every key created for a user, by the user or by an admin for them, is held to the user's
effective grant (their own narrowed by their team's, `domain.grants.effective_grant`):
- a key may list only granted models; '*' only if every model is granted (it is refused
  otherwise, never quietly narrowed, so a key's list always says what it may use);
- a key asked for without a budget gets the grant's default (or, with only a maximum, a hard
  budget at the maximum), so with a maximum no key is left without a budget;
- a budget that may spend past the maximum (its limit plus any grace; any soft budget) is
  refused, on key creation and on PUT /api/admin/budgets/key/{id} alike.
An admin who wants more for a user changes the grant first. PUT replaces the whole grant:
a field left out is unrestricted, so {} lifts every restriction. A grant bounds the budgets
of keys created after it is set; /v1/models reads its models on every request, and admission
can through `RegistryView.granted_models`.
"""

from __future__ import annotations

from fastapi import APIRouter

from domain.errors import DomainError
from domain.grants import Grant, GrantExceededError
from domain.principals import Team, User
from domain.quota_policy import BudgetPolicy
from domain.services.acting import as_actor
from gateway import errors
from gateway.api.deps import Admin, Ctx, usd, usd_to_nanos
from gateway.api.schemas import GrantBody

router = APIRouter(prefix="/api/admin", tags=["grants"])


@router.put("/users/{user_id}/grant",
            summary="Replace a user's grant: models and key budgets for keys created for them")
async def put_user_grant(user_id: str, body: GrantBody, ctx: Ctx, who: Admin) -> dict:
    _user(ctx, user_id)
    user = await ctx.command(as_actor(who.actor, ctx.registry.grant_user), user_id, parse_grant(ctx, body))
    return user_grant_view(ctx, user)


@router.get("/users/{user_id}/grant", summary="A user's grant and the effective one (with the team's)")
async def get_user_grant(user_id: str, ctx: Ctx, _: Admin) -> dict:
    return user_grant_view(ctx, _user(ctx, user_id))


@router.put("/teams/{team_id}/grant",
            summary="Replace a team's grant; it narrows the grant of every user of the team")
async def put_team_grant(team_id: str, body: GrantBody, ctx: Ctx, who: Admin) -> dict:
    _team(ctx, team_id)
    team = await ctx.command(as_actor(who.actor, ctx.registry.grant_team), team_id, parse_grant(ctx, body))
    return {"team_id": team.team_id, "grant": grant_view(team.grant)}


@router.get("/teams/{team_id}/grant", summary="A team's grant")
async def get_team_grant(team_id: str, ctx: Ctx, _: Admin) -> dict:
    return {"team_id": team_id, "grant": grant_view(_team(ctx, team_id).grant)}


def parse_grant(ctx: Ctx, body: GrantBody) -> Grant:
    models = body.models if body.models is not None else ["*"]
    unknown = [m for m in models if m != "*" and ctx.registry_view.model(m) is None]
    if unknown:
        raise errors.bad_request(f"unknown models {unknown}; see GET /v1/models", "models",
                                 code="model_not_found")
    default = None
    if (asked := body.default_key_budget) is not None:
        default = BudgetPolicy(limit=usd_to_nanos(asked.limit_usd, "default_key_budget.limit_usd"),
                               period=asked.period, mode=asked.mode,
                               grace_percent=asked.grace_percent, grace_hours=asked.grace_hours)
    max_limit = (usd_to_nanos(body.max_key_budget_usd, "max_key_budget_usd")
                 if body.max_key_budget_usd is not None else None)
    try:
        return Grant(models=tuple(models), default_key_budget=default, max_key_limit=max_limit)
    except DomainError as exc:
        raise errors.bad_request(str(exc), "default_key_budget") from None


def held_to_grant(ctx: Ctx, user_id: str, models: list[str],
                  requested: BudgetPolicy | None) -> BudgetPolicy | None:
    """The budget a new key of `user_id` gets; 403 if its models or budget exceed the grant."""
    grant = ctx.registry_view.effective_grant(user_id) or Grant()
    refused = grant.refused_models(models)
    if refused:
        what = ("'*' (every model) is" if refused == ["*"]
                else f"models {refused} are")
        raise errors.forbidden(
            f"{what} not granted to user {user_id!r}, who may use only "
            f"{sorted(grant.allowed_models or ())}; list the models the key needs from those. "
            f"{_raise_hint(ctx, user_id)}", "model_not_granted")
    return check_key_budget(ctx, user_id, requested, grant)


def check_key_budget(ctx: Ctx, user_id: str, requested: BudgetPolicy | None,
                     grant: Grant | None = None) -> BudgetPolicy | None:
    grant = grant or ctx.registry_view.effective_grant(user_id) or Grant()
    try:
        return grant.key_budget(requested)
    except GrantExceededError as exc:
        raise errors.forbidden(f"user {user_id!r}: {exc}. Ask for a smaller budget, or for none "
                               f"to get the grant's default. {_raise_hint(ctx, user_id)}",
                               "budget_not_granted") from None


def _raise_hint(ctx: Ctx, user_id: str) -> str:
    user = ctx.registry_view.user(user_id)
    team = (f" or the team's with PUT /api/admin/teams/{user.team_id}/grant"
            if user is not None and user.team_id else "")
    return ("Keys are held to their user's grant, admins' keys for them too: an admin who wants "
            f"more changes the grant first with PUT /api/admin/users/{user_id}/grant{team}.")


def grant_view(grant: Grant) -> dict:
    policy = grant.default_key_budget
    return {"models": list(grant.models),
            "default_key_budget": None if policy is None else {
                "limit_usd": usd(policy.limit), "period": str(policy.period),
                "mode": str(policy.mode), "grace_percent": policy.grace_percent,
                "grace_hours": policy.grace_hours},
            "max_key_budget_usd": None if grant.max_key_limit is None else usd(grant.max_key_limit)}


def user_grant_view(ctx: Ctx, user: User) -> dict:
    effective = ctx.registry_view.effective_grant(user.user_id) or user.grant
    return {"user_id": user.user_id, "team_id": user.team_id, "grant": grant_view(user.grant),
            "effective": grant_view(effective)}


def _user(ctx: Ctx, user_id: str) -> User:
    user = ctx.registry_view.user(user_id)
    if user is None:
        raise errors.not_found(f"user {user_id!r} does not exist; create it with POST "
                               "/api/admin/users first", code="user_not_found", param="user_id")
    return user


def _team(ctx: Ctx, team_id: str) -> Team:
    team = ctx.registry_view.team(team_id)
    if team is None:
        raise errors.not_found(f"team {team_id!r} does not exist; create it with POST "
                               "/api/admin/teams first", code="team_not_found", param="team_id")
    return team
