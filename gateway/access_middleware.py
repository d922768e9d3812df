"""Which requests become access events: an ASGI middleware around the app, and the /v1 fast lane's hook.

A 401 is a failed authentication, a 403 a permission refusal, and any other answer to a
POST, PUT, PATCH or DELETE under /api an admin action. The middleware only looks at the
answer's status (and, for /api, at who `deps.principal` recognised), so the routes need no
audit code. Mutating /api requests get a request id (the caller's `X-Request-Id` if it is a
short printable one, else a new one), echoed in the answer so it can be quoted.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import uuid
from typing import Any

from gateway.access_audit import admin_actor
from gateway.context import GatewayContext
from gateway.v1.admission import credential

log = logging.getLogger(__name__)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ACTOR = "audit_actor"  # where deps.principal leaves who called, in the request's state
REQUEST_ID = b"x-request-id"
# path parameters naming what a request acts on, and how the trail names that
TARGETS = {"key_id": "key", "user_id": "user", "team_id": "team", "job_id": "job", "model": "model",
           "request_id": "request"}


class AccessAuditMiddleware:
    def __init__(self, app: Any, ctx: GatewayContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        surface = "api" if path.startswith("/api/") else "v1" if path.startswith("/v1/") else None
        if surface is None or not self.ctx.access_audit.enabled:
            await self.app(scope, receive, send)
            return
        mutating = surface == "api" and scope["method"] in MUTATING
        request_id = _request_id(scope) if mutating else None
        status = 500  # what the catch-all answers when the app raises

        async def watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if request_id is not None:
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (REQUEST_ID, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            try:
                self._record(scope, surface, status, mutating, request_id)
            except Exception:  # the answer is sent: a failure to record must not turn it into an error
                log.exception("audit: the access event of %s %s was not recorded", scope["method"], path)

    def _record(self, scope: dict, surface: str, status: int, mutating: bool, request_id: str | None) -> None:
        audit = self.ctx.access_audit
        if status == 401:
            audit.auth_failed(surface, source_ip(scope), f"http_{status}")
            return
        if status != 403 and not mutating:  # a read that was answered: nothing to record
            return
        ip = source_ip(scope)
        actor = (scope.get("state") or {}).get(ACTOR) or caller(self.ctx, _authorization(scope))
        route = scope.get("route")
        template = getattr(route, "path", None) or scope["path"][:200]
        target = target_of(scope.get("path_params") or {})
        if status == 403:
            audit.refused(surface, ip, actor, target, template, f"http_{status}")
        elif mutating:
            audit.admin_action(actor=actor, method=scope["method"], path=template, target=target,
                               status=status, request_id=request_id, source_ip=ip)


def record_v1(ctx: GatewayContext, status: int, scope: dict, authorization: str | None) -> None:
    """The /v1 fast lane's access events (it answers without the app, so without the
    middleware): only a 401 or 403 records anything, so a served request pays one comparison."""
    if status == 401:
        ctx.access_audit.auth_failed("v1", source_ip(scope), "http_401")
    elif status == 403:
        ctx.access_audit.refused("v1", source_ip(scope), caller(ctx, authorization), "",
                                 scope.get("path", ""), "http_403")


def caller(ctx: GatewayContext, authorization: str | None) -> str:
    """Who a credential names (`admin:<prefix>…`, `user:<id>`, `key:<prefix>`), for a request no route
    identified (an unknown path, a refusal before the route ran); `anonymous` if nobody."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return "anonymous"
    digest = ctx.hmac(authorization[7:].strip())
    if hmac.compare_digest(digest, ctx.admin_token_hmac):
        return admin_actor(ctx.admin_token)
    if (user := ctx.registry_view.user_for_token(digest)) is not None:
        return f"user:{user.user_id}"
    if (match := ctx.registry_view.key_for_secret(digest, ctx.clock.now())) is not None:
        return f"key:{match.key.prefix}"
    return "anonymous"


def _authorization(scope: dict) -> str | None:
    """The credential as /v1 admission reads it (Authorization, or Anthropic's `x-api-key`), so
    an Anthropic client is named, not `anonymous`."""
    found = {name: value.decode("latin-1") for name, value in scope["headers"]
             if name in (b"authorization", b"x-api-key")}
    return credential(found.get(b"authorization"), found.get(b"x-api-key"))


def target_of(params: dict[str, Any]) -> str:
    """What a request acts on, from its path parameters: `user:alice`, `key:<id>`, `team:t1`."""
    if "scope" in params and "scope_id" in params:  # /budgets/{scope}/{scope_id}
        return f"{params['scope']}:{params['scope_id']}"[:200]
    for name, kind in TARGETS.items():
        if name in params:
            return f"{kind}:{params[name]}"[:200]
    return ""


def source_ip(scope: dict) -> str | None:
    """The peer's address; None when the server gave none or something else (a test client's name)."""
    client = scope.get("client")
    if not client:
        return None
    try:
        return str(ipaddress.ip_address(client[0]))
    except ValueError:
        return None


def _request_id(scope: dict) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID:
            text = value.decode("latin-1")
            if 0 < len(text) <= 64 and text.isascii() and text.isprintable():
                return text
            break
    return f"req-{uuid.uuid4().hex[:20]}"
