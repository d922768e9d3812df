"""Refusals before a body is read, for every route of the app (the /v1 fast lane, in front of
the app, does its own: gateway/v1/body.py).

A request is refused as soon as its head says enough: a declared length over the cap is a
413, and an /api request that carries no credential this gateway knows is a 401, both
without reading a byte of the body, so an unauthenticated 300 MB POST costs nothing. A
body sent without a declared length is read up to the cap and refused the moment it passes
it. Refusals that leave a body unread close the connection (`Connection: close`): the
unread bytes would otherwise be taken for the next request.
"""

from __future__ import annotations

import hmac
from typing import Any

from gateway import errors
from gateway.context import GatewayContext
from gateway.v1.messages_api import error_response

CREDENTIAL_REQUIRED = "/api/"


class RequestGuard:
    def __init__(self, app: Any, ctx: GatewayContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name: value for name, value in scope["headers"]
                   if name in (b"content-length", b"authorization", b"transfer-encoding")}
        limit = self.ctx.options.max_body_bytes
        declared = headers.get(b"content-length", b"").strip()
        try:
            if scope["path"].startswith(CREDENTIAL_REQUIRED):
                self._known_credential(headers.get(b"authorization", b"").decode("latin-1"))
            if declared and (not declared.isdigit() or int(declared) > limit):
                raise (errors.too_large(limit) if declared.isdigit() else errors.bad_request(
                    "the Content-Length header must be a whole number of bytes",
                    code="invalid_content_length"))
            has_body = (declared and declared != b"0") or b"transfer-encoding" in headers
            body = await _read_capped(receive, limit) if has_body else b""
        except errors.GatewayError as refused:
            refused.headers = {**refused.headers, "connection": "close"}
            # Anthropic's routes answer in Anthropic's shape, so its SDK raises its own class
            anthropic = scope["path"].startswith("/v1/messages")
            await (error_response(refused) if anthropic else refused.response())(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _known_credential(self, header: str) -> None:
        """Passes the admin token, a user token or an API key this gateway knows; which routes
        each may use is the routes' own decision (gateway/api/deps.py)."""
        if not header[:7].lower() == "bearer " or not header[7:].strip():
            raise errors.unauthorized("send 'Authorization: Bearer <token>' with the admin token, a "
                                      "user token or an API key", code="missing_token")
        digest = self.ctx.hmac(header[7:].strip())
        view = self.ctx.registry_view
        if (hmac.compare_digest(digest, self.ctx.admin_token_hmac)
                or view.user_for_token(digest) is not None
                or view.key_for_secret(digest, self.ctx.clock.now()) is not None):
            return
        raise errors.unauthorized("the token is unknown, revoked or expired", code="invalid_token")


async def _read_capped(receive: Any, limit: int) -> bytes:
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive() that hands the app the body already read, then waits for a disconnect."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
