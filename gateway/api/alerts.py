"""Alert rules: admins manage every rule at /api/admin/alerts (and see deliveries); users manage
their own at /api/alerts, on their own user id and keys only. A webhook rule's signing secret is
in the response that creates it (or rotates it) and never again."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from domain.alerts.rule import AlertRule
from domain.alerts.rule_spec import RuleSpec, TooManyRules
from gateway import errors
from gateway.api.alert_schemas import AlertRuleBody, AlertRuleUpdate
from gateway.api.alerts_service import (
    alerts_of,
    check_users_rule,
    check_users_webhook,
    delivery_view,
    rule_id_of,
    rule_view,
    spec_of,
    with_secret,
)
from gateway.api.analytics_params import refuse_unknown
from gateway.api.deps import Admin, Caller, Ctx, Principal
from gateway.context import GatewayContext

admin_router = APIRouter(prefix="/api/admin/alerts", tags=["alerts"])
user_router = APIRouter(prefix="/api/alerts", tags=["alerts"])


async def _rule(ctx: GatewayContext, rule_id: str, owner: str | None = None,
                any_owner: bool = True) -> AlertRule:
    rule = await ctx.query(alerts_of(ctx).rule, rule_id_of(rule_id))
    if rule is None or (not any_owner and rule.owner != owner):
        raise errors.not_found(f"alert rule {rule_id[:64]!r} does not exist", code="alert_rule_not_found",
                               param="id")
    return rule


async def _update(ctx: GatewayContext, rule: AlertRule, body: AlertRuleUpdate, spec: RuleSpec) -> dict:
    alerts = alerts_of(ctx)
    rule = await ctx.command(alerts.change_rule, rule.id, spec)
    if body.rotate_webhook_secret:
        rule = await ctx.command(alerts.rotate_secret, rule.id)
        return with_secret(ctx, rule, rule_view(rule))
    return rule_view(rule)


# ----- admins ------------------------------------------------------------------------------

@admin_router.get("", summary="Every alert rule")
async def list_rules(ctx: Ctx, _: Admin) -> dict:
    rules = await ctx.query(alerts_of(ctx).rules)
    return {"object": "list", "data": [rule_view(r) for r in rules]}


@admin_router.post("", status_code=201, summary="Create a rule; a webhook's secret is in this response only")
async def create_rule(body: AlertRuleBody, ctx: Ctx, _: Admin) -> dict:
    rule = await ctx.command(alerts_of(ctx).create_rule, spec_of(body))
    return with_secret(ctx, rule, rule_view(rule))


@admin_router.get("/deliveries", summary="Deliveries: state, attempts, last error, dead letters")
async def list_deliveries(ctx: Ctx, _: Admin, request: Request, after: int = Query(default=0, ge=0, le=2**62),
                          limit: int = Query(default=50, ge=1, le=500),
                          state: str | None = Query(default=None, pattern="^(pending|sent|dead_lettered)$")
                          ) -> dict:
    refuse_unknown(request)  # `status=dead_lettered` for `state=` would list every delivery
    page, cursor = await ctx.query(alerts_of(ctx).deliveries, after, limit)
    data = [delivery_view(d) for d in page if state is None or d.status == state]
    return {"object": "list", "data": data, "next_after": cursor}


@admin_router.get("/{rule_id}", summary="One alert rule")
async def get_rule(rule_id: str, ctx: Ctx, _: Admin) -> dict:
    return rule_view(await _rule(ctx, rule_id))


@admin_router.put("/{rule_id}", summary="Replace a rule (enable, disable, change)")
async def put_rule(rule_id: str, body: AlertRuleUpdate, ctx: Ctx, _: Admin) -> dict:
    return await _update(ctx, await _rule(ctx, rule_id), body, spec_of(body))


@admin_router.delete("/{rule_id}", summary="Delete a rule")
async def delete_rule(rule_id: str, ctx: Ctx, _: Admin) -> dict:
    rule = await _rule(ctx, rule_id)
    rule = await ctx.command(alerts_of(ctx).delete_rule, rule.id)
    return {**rule_view(rule), "deleted": True}


# ----- users' own rules --------------------------------------------------------------------

def _user(who: Principal) -> str:
    if who.user_id is None:
        raise errors.bad_request("the admin token is not a user: manage rules at /api/admin/alerts",
                                 code="user_required")
    return who.user_id


@user_router.get("", summary="Your alert rules")
async def list_own_rules(ctx: Ctx, who: Caller) -> dict:
    user_id = _user(who)
    rules = await ctx.query(alerts_of(ctx).rules)
    return {"object": "list", "data": [rule_view(r) for r in rules if r.owner == user_id]}


@user_router.post("", status_code=201, summary="Create a rule on your spend or one of your keys")
async def create_own_rule(body: AlertRuleBody, ctx: Ctx, who: Caller) -> dict:
    user_id = _user(who)
    spec = await check_users_webhook(check_users_rule(ctx, who, spec_of(body)))
    try:
        rule = await ctx.command(alerts_of(ctx).create_rule, spec, user_id)
    except TooManyRules as exc:
        raise errors.GatewayError(409, str(exc), "invalid_request_error", "too_many_alert_rules") from None
    return with_secret(ctx, rule, rule_view(rule))


@user_router.get("/{rule_id}", summary="One of your rules")
async def get_own_rule(rule_id: str, ctx: Ctx, who: Caller) -> dict:
    return rule_view(await _rule(ctx, rule_id, _user(who), any_owner=False))


@user_router.put("/{rule_id}", summary="Replace one of your rules")
async def put_own_rule(rule_id: str, body: AlertRuleUpdate, ctx: Ctx, who: Caller) -> dict:
    rule = await _rule(ctx, rule_id, _user(who), any_owner=False)
    spec = await check_users_webhook(check_users_rule(ctx, who, spec_of(body)))
    return await _update(ctx, rule, body, spec)


@user_router.delete("/{rule_id}", summary="Delete one of your rules")
async def delete_own_rule(rule_id: str, ctx: Ctx, who: Caller) -> dict:
    rule = await _rule(ctx, rule_id, _user(who), any_owner=False)
    rule = await ctx.command(alerts_of(ctx).delete_rule, rule.id)
    return {**rule_view(rule), "deleted": True}
