"""The job-cost API's request bodies: read under the gateway's size cap, parsed by the /v1
parser (depth-limited), and checked field by field into 400s that name the field."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from fastapi import Request

from domain.money import MAX_PRICE, NANOS_PER_UNIT, MoneyError, to_nanos
from gateway import errors
from gateway.context import GatewayContext
from gateway.v1.body import parse_json, read_body

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
MAX_METADATA_BYTES = 16_384
MAX_TEXT = 1000


async def json_body(ctx: GatewayContext, request: Request, allowed: set[str],
                    amounts: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The body as a JSON object with only `allowed` fields (an empty body is `{}`). A JSON number
    in an `amounts` field is read exactly, as a Decimal: the fast parser makes a float of it, and
    123456789012345678901234567890 would become 123456789012345680000000000000."""
    async def chunks() -> AsyncIterator[bytes]:
        return request.stream()
    raw = await read_body(chunks, request.headers.get("content-length"), ctx.options.max_body_bytes)
    body = parse_json(raw) if raw.strip() else {}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise errors.bad_request(f"unknown field(s) {', '.join(repr(u[:40]) for u in unknown[:5])}; "
                                 f"this endpoint takes {', '.join(sorted(allowed))}", unknown[0][:40])
    numbers = [f for f in amounts if isinstance(body.get(f), int | float) and not isinstance(body[f], bool)]
    if numbers:  # parse_json has refused deep nesting and bad JSON, so the stdlib parser is safe here
        try:
            exact = json.loads(raw, parse_float=Decimal)
        except (ValueError, RecursionError):  # what orjson took, the stdlib takes; kept a 400 if not
            raise errors.bad_request("request body is not valid JSON; send a JSON object", None,
                                     code="invalid_json") from None
        body.update({field: exact[field] for field in numbers})
    return body


def name(body: dict[str, Any], field: str, required: bool = True) -> str | None:
    """An identifier: 1-128 letters, digits and '_.:@+-', starting with a letter or digit."""
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise errors.bad_request(f"'{field}' is required: 1 to 128 letters, digits and '_.:@+-' "
                                 "starting with a letter or digit, as in \"document_analysis\"", field)
    return value


def text(body: dict[str, Any], field: str, limit: int = MAX_TEXT) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit or \
            any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value):
        raise errors.bad_request(f"'{field}' must be a string of 1 to {limit} characters without "
                                 "control characters", field)
    return value


def metadata(body: dict[str, Any]) -> dict[str, Any]:
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.bad_request("'metadata' must be a JSON object, as in {\"document_id\": \"doc_1\"}",
                                 "metadata")
    if len(orjson.dumps(value)) > MAX_METADATA_BYTES:
        raise errors.bad_request(f"'metadata' is larger than {MAX_METADATA_BYTES} bytes as JSON; keep "
                                 "ids and small facts there, not documents", "metadata")
    return value


def usd_amount(body: dict[str, Any], field: str) -> int | None:
    """A USD amount as a decimal string, or a JSON number read exactly (`json_body`'s `amounts`);
    never through a float."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise errors.bad_request(f"'{field}' must be a USD amount such as \"0.25\"", field)
    try:
        nanos = to_nanos(Decimal(str(value)))
    except (MoneyError, ArithmeticError, ValueError):
        raise errors.bad_request(f"'{field}' must be a USD amount with at most 9 decimals, such as "
                                 f"\"0.25\"; got {str(value)[:40]!r}", field) from None
    if not 0 < nanos <= MAX_PRICE:
        raise errors.bad_request(f"'{field}' must be above zero and at most {MAX_PRICE // NANOS_PER_UNIT:,} "
                                 "USD", field)
    return nanos


@dataclass(frozen=True)
class CallRequest:
    messages: list[dict[str, Any]]
    purpose: str | None
    model: str | None
    temperature: float | int | None
    max_tokens: int | None


CALL_FIELDS = {"messages", "purpose", "model", "temperature", "max_tokens"}


def call_request(body: dict[str, Any]) -> CallRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise errors.bad_request("'messages' is required: a non-empty list of message objects like "
                                 "{\"role\": \"user\", \"content\": \"…\"}", "messages")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or
                                    not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        raise errors.bad_request("'temperature' must be a number from 0 to 2", "temperature")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise errors.bad_request("'max_tokens' must be a positive integer", "max_tokens")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not 1 <= len(model) <= 256):
        raise errors.bad_request("'model' must be a model name; see GET /v1/models", "model")
    return CallRequest(messages, text(body, "purpose", 128), model, temperature, max_tokens)
