"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import orjson

from gateway.responses import JsonBytesResponse


def shown(text: str, limit: int = 100) -> str:
    """Something the client sent, as an error quotes it: `limit` characters at most, and none that
    reorders or hides text (a right-to-left override, a NUL) but as an escape."""
    quoted = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text[:limit])
    return quoted + "…" if len(text) > limit else quoted


class GatewayError(Exception):
    """An error a client sees: a status, an OpenAI error type and code, and a helpful message."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}
        # Set on a /v1 refusal (gateway/v1/refusals.py): the id a client can quote, and the
        # rule and facts its decision record keeps.
        self.request_id: str | None = None
        self.rule: str | None = None
        self.details: dict | None = None
        self.key: object | None = None

    def body(self) -> dict:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        if self.request_id is not None:
            error["request_id"] = self.request_id
        return {"error": error}

    def response(self) -> JsonBytesResponse:
        return JsonBytesResponse(orjson.dumps(self.body()), self.status, self.headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code, param)


def unauthorized(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, "invalid_request_error", code)


def forbidden(message: str, code: str) -> GatewayError:
    return GatewayError(403, message, "permission_error", code)


def not_found(message: str, code: str = "model_not_found", param: str | None = "model") -> GatewayError:
    return GatewayError(404, message, "invalid_request_error", code, param)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"request body is larger than {limit} bytes; send a smaller request",
                        "invalid_request_error", "request_too_large")


def insufficient_quota(message: str) -> GatewayError:
    return GatewayError(429, message, "insufficient_quota", "insufficient_quota")


def rate_limited(message: str, retry_after_s: int) -> GatewayError:
    return GatewayError(429, message, "requests", "rate_limit_exceeded",
                        headers={"retry-after": str(retry_after_s)})


def upstream_failed(message: str) -> GatewayError:
    return GatewayError(502, message, "api_error", "upstream_error")


def upstream_timeout(message: str) -> GatewayError:
    return GatewayError(504, message, "api_error", "upstream_timeout")
