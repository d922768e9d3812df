"""What the alerts routes share: a rule as JSON, a body made into a rule, and the checks that keep
a user's rules to what is theirs."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from domain.alerts.rule import AlertRule
from domain.alerts.rule_spec import OWNER, AlertRuleError, RuleSpec, rule_spec
from domain.alerts.signing import webhook_secret
from domain.alerts.trigger import Delivery
from domain.alerts.webhook_host import as_address, host_refusal, is_public, normal_host
from domain.money import usd_text
from domain.services.alerts import Alerts
from gateway import errors
from gateway.api.alert_schemas import AlertRuleBody
from gateway.api.deps import Principal
from gateway.context import GatewayContext

RESOLVE_TIMEOUT_S = 2.0  # a slow resolver delays the answer this long at most, then the name passes


def alerts_of(ctx: GatewayContext) -> Alerts:
    if ctx.alerts is None:
        raise errors.GatewayError(503, "alerts are not available in this process", "server_error",
                                  "alerts_unavailable")
    return ctx.alerts


def spec_of(body: AlertRuleBody) -> RuleSpec:
    try:
        return rule_spec(body.name, body.scope, body.scope_id, body.trigger.model_dump(), body.channels,
                         body.recipients, body.webhook_url, body.enabled)
    except AlertRuleError as exc:
        raise errors.bad_request(str(exc), exc.field, code="invalid_alert_rule") from None


def rule_view(rule: AlertRule) -> dict[str, Any]:
    spec = rule.spec
    t = spec.trigger
    trigger = ({"budget_percent": t.budget_percent} if t.budget_percent is not None
               else {"spend_usd": usd_text(t.spend_nanos)} if t.spend_nanos is not None
               else {"anomaly": t.anomaly})
    return {"id": str(rule.id), "name": spec.name, "scope": spec.scope, "scope_id": spec.scope_id,
            "trigger": trigger, "channels": list(spec.channels), "recipients": list(spec.recipients),
            "webhook_url": spec.webhook_url, "enabled": spec.enabled, "owner": rule.owner,
            "created_at": rule.created_at.isoformat()}


def with_secret(ctx: GatewayContext, rule: AlertRule, view: dict[str, Any]) -> dict[str, Any]:
    """The view with the webhook signing secret, for the one response that shows it."""
    if "webhook" not in rule.spec.channels:
        return view
    return {**view, "webhook_secret": webhook_secret(ctx.server_secret, rule.id, rule.secret_version),
            "note": "store webhook_secret now: it is shown only once (rotate it with PUT and "
                    "rotate_webhook_secret: true)"}


def rule_id_of(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise errors.not_found(f"alert rule {text[:64]!r} does not exist", code="alert_rule_not_found",
                               param="id") from None


def delivery_view(d: Delivery) -> dict[str, Any]:
    return {"id": str(d.id), "trigger_id": str(d.trigger_id), "rule_id": str(d.rule_id),
            "channel": d.channel, "recipient": d.recipient, "subject": d.subject, "state": d.status,
            "attempts": d.attempts, "last_error": d.last_error,
            "next_attempt_at": d.next_at.isoformat() if d.next_at and d.status == "pending" else None,
            "scheduled_at": d.scheduled_at.isoformat(),
            "finished_at": d.finished_at.isoformat() if d.finished_at else None}


def check_users_rule(ctx: GatewayContext, who: Principal, spec: RuleSpec) -> RuleSpec:
    """A user's rule watches only what is theirs and tells only them: their user id or one of their
    keys; recipients '@owner', their id or their own address; webhooks to public addresses."""
    user_id = who.user_id
    if spec.scope == "user" and spec.scope_id != user_id:
        raise errors.bad_request(f"a user's rule may watch only their own spend: scope_id must be "
                                 f"{user_id!r}", "scope_id", code="not_your_scope")
    if spec.scope == "key":
        key = _key(ctx, spec.scope_id or "")
        if key is None or key.user_id != user_id:
            raise errors.bad_request(f"key {spec.scope_id} is not one of your keys", "scope_id",
                                     code="not_your_scope")
    if spec.scope not in ("user", "key"):
        raise errors.bad_request("a user's rule has scope user or key (team and global rules are "
                                 "for admins, at /api/admin/alerts)", "scope", code="not_your_scope")
    user = ctx.registry_view.user(user_id)
    own = {OWNER, user_id, *([user.email] if user and user.email else [])}
    strangers = [r for r in spec.recipients if r not in own]
    if strangers:
        raise errors.bad_request(f"a user's rule tells only that user: use '@owner' (not {strangers[0]!r})",
                                 "recipients", code="not_your_recipient")
    if "webhook" in spec.channels and spec.webhook_url is None:
        raise errors.bad_request("a webhook rule needs 'webhook_url'", "webhook_url")
    if spec.webhook_url is not None and (why := private_host(spec.webhook_url)):
        raise _private_webhook(why)
    return spec


async def check_users_webhook(spec: RuleSpec) -> RuleSpec:
    """A user's webhook host must not resolve to a private address now either."""
    if spec.webhook_url is not None and (why := await private_resolution(spec.webhook_url)):
        raise _private_webhook(why)
    return spec


def _private_webhook(why: str) -> errors.GatewayError:
    return errors.bad_request(f"'webhook_url' must name a public host: {why}. Loopback, private, "
                              "link-local and reserved addresses and local names are refused; use the "
                              "receiver's public host name", "webhook_url", code="private_webhook")


def _key(ctx: GatewayContext, key_id: str) -> Any:
    try:
        return ctx.registry_view.key(UUID(key_id))
    except ValueError:
        return None


def private_host(url: str) -> str | None:
    """Why the URL's host may not receive a user's webhook (loopback, a private, link-local or
    reserved address, an address in disguise, a local name), or None. The webhook channel checks
    the address a name resolves to again when it sends."""
    return host_refusal(urlsplit(url).hostname or "")


async def private_resolution(url: str, timeout_s: float = RESOLVE_TIMEOUT_S) -> str | None:
    """Why the URL's host name resolves somewhere a webhook may not go, or None: also when it does
    not resolve now (DNS trouble passes; the channel resolves and checks again when it sends)."""
    host = normal_host(urlsplit(url).hostname or "")
    if not host or as_address(host) is not None:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            addresses = await resolved_addresses(host)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        return None
    for address in addresses:
        if not is_public(address):
            return f"{host} resolves to {address}, which is not a public address"
    return None


async def resolved_addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses the system resolver gives for `host` (scope ids dropped)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
