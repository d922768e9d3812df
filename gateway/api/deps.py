"""Who is calling the management API: the admin bootstrap token, an admin user, or a user."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from domain.money import MoneyError, from_nanos, to_nanos
from domain.principals import Role
from gateway import errors
from gateway.access_audit import admin_actor
from gateway.context import GatewayContext


@dataclass(frozen=True)
class Principal:
    user_id: str | None  # None for the bootstrap admin token
    role: Role
    actor: str = "system"  # who the audit trail says acted: `admin:<prefix>…` or `user:<id>`

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def context(request: Request) -> GatewayContext:
    return request.app.state.ctx


def principal(request: Request) -> Principal:
    ctx = context(request)
    header = request.headers.get("authorization") or ""
    if not header.lower().startswith("bearer ") or not header[7:].strip():
        raise errors.unauthorized("send 'Authorization: Bearer <token>' with the admin token or a "
                                  "user token from POST /api/admin/users/{user_id}/tokens",
                                  code="missing_token")
    digest = ctx.hmac(header[7:].strip())
    if hmac.compare_digest(digest, ctx.admin_token_hmac):
        actor = admin_actor(ctx.admin_token)
        request.state.audit_actor = actor  # the access audit's actor (gateway/access_middleware.py)
        return Principal(None, Role.ADMIN, actor)
    user = ctx.registry_view.user_for_token(digest)
    if user is None:
        raise errors.unauthorized("the token is unknown, or its user was offboarded",
                                  code="invalid_token")
    request.state.audit_actor = f"user:{user.user_id}"
    return Principal(user.user_id, user.role, f"user:{user.user_id}")


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if not who.is_admin:
        raise errors.forbidden("this needs an admin token", "admin_required")
    return who


def acting_user(who: Principal, requested: str | None) -> str:
    """The user an action is for: yourself, or anyone if you are an admin."""
    if requested is not None and requested != who.user_id:
        if not who.is_admin:
            raise errors.forbidden("users may act only on their own keys and usage",
                                   "not_your_resource")
        return requested
    if who.user_id is None:
        raise errors.bad_request("the admin token is not a user: say which user_id this is for",
                                 "user_id", code="user_id_required")
    return who.user_id


def usd_to_nanos(value: Decimal | int | str, field: str) -> int:
    try:
        nanos = to_nanos(Decimal(str(value)))
    except (MoneyError, ArithmeticError, ValueError):
        raise errors.bad_request(f"'{field}' must be a decimal amount in USD with at most 9 "
                                 f"decimals, got {value!r}", field) from None
    if nanos < 0:
        raise errors.bad_request(f"'{field}' must not be negative", field)
    return nanos


def usd(nanos: int) -> str:
    """An exact USD amount for JSON: a decimal string, never a float, at any size. (Decimal's
    `normalize` rounds to the context's 28 digits: 10**30 + 1 nano-dollars came out as 10**21.)"""
    text = format(from_nanos(nanos), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


Ctx = Annotated[GatewayContext, Depends(context)]
Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]


def key_name(ctx: GatewayContext, key_id: str) -> str | None:
    """The name of a key as the registry knows it; None for an id that is not a registered key."""
    try:
        key = ctx.registry_view.key(UUID(key_id))
    except ValueError:
        return None
    return None if key is None else key.name
