"""The request body: read under a size cap, parsed as one JSON object, and its job header."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import orjson

from gateway import errors

BodySource = Callable[[], Awaitable[bytes | AsyncIterator[bytes]]]


async def read_body(source: BodySource, declared: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes.

    `source` starts reading only when called, after the key and the declared length were
    checked, so a refused request is answered without asking for its body (no "100
    Continue"). It gives the whole body when the server already holds it, else its chunks.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks = await source()
    if isinstance(chunks, bytes):
        if len(chunks) > limit:
            raise errors.too_large(limit)
        return chunks
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def job_of(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(UUID(raw))
    except ValueError:
        raise errors.bad_request(f"header X-Meterline-Job must be a job id (UUID) from "
                                 f"POST /api/jobs, got {raw!r}", code="invalid_job") from None


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"request body is not valid JSON ({exc}); send a JSON object",
                                 code="invalid_json") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("request body must be a JSON object", code="invalid_json")
    return payload
