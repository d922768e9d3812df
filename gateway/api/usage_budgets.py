"""`this_month` of GET /api/usage: each budget that applies to a user, spent against its limit.

A user's spend is held to the budgets of their keys, of themselves and of their team; each
is reported in its own current period (a month unless the budget says day or week). Spent is
what the ledger has recorded this period plus what this gateway has settled and the ledger
not yet acknowledged; amounts merely reserved by requests in flight are not spent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

from domain.quota_policy import Scope
from gateway.api.deps import usd
from gateway.context import GatewayContext

_CENT = Decimal("0.01")


def budget_scopes(ctx: GatewayContext, user_id: str) -> list[tuple[Scope, str]]:
    """The scopes that can hold a budget over this user's spend: keys, the user, their team."""
    keys = sorted(ctx.registry_view.api_keys(user_id), key=lambda k: (k.name, str(k.id)))
    scopes = [(Scope.KEY, str(k.id)) for k in keys] + [(Scope.USER, user_id)]
    user = ctx.registry_view.user(user_id)
    if user is not None and user.team_id:
        scopes.append((Scope.TEAM, user.team_id))
    return scopes


def this_month(ctx: GatewayContext, user_id: str) -> list[dict]:
    """One entry per scope with a budget; scopes without one are left out."""
    entries = []
    for scope, scope_id in budget_scopes(ctx, user_id):
        snap = ctx.guard.snapshot((scope, scope_id))
        if snap is None or snap["policy"] is None:
            continue
        limit = snap["policy"]["limit"]
        spent = snap["ledger_spent"] + snap["unacknowledged"]
        entries.append({"scope": str(scope), "id": scope_id, "period": snap["policy"]["period"],
                        "period_start": snap["period_start"], "spent_usd": usd(spent),
                        "limit_usd": usd(limit), "remaining_usd": usd(max(0, limit - spent)),
                        "percent": percent(spent, limit), "mode": snap["policy"]["mode"]})
    return entries


def percent(spent: int, limit: int) -> float:
    """Spent as a percentage of the limit, rounded half up to two decimals (a JSON number).

    Past 100 when spend passed the limit; a zero limit reads 0 until something is spent, then 100.
    """
    if limit <= 0:
        return 100.0 if spent > 0 else 0.0
    with localcontext() as exact:
        exact.prec = 60  # nano-dollar amounts up to 2**63 and their ratio, without rounding first
        return float((Decimal(spent) * 100 / Decimal(limit)).quantize(_CENT, rounding=ROUND_HALF_UP))
