"""The request body: read under a size cap, parsed as one JSON object, and its job header."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import accumulate, cycle
from operator import mul
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


# Real requests nest under 20 levels, tool schemas included. Past 255 orjson cannot write the
# body on to the model server, and recursive walks of it would need as many stack frames.
MAX_DEPTH = 64
_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_RUNS = re.compile(rb"\[+|\]+")
_PEELED = 4  # innermost levels removed first: they are most of the brackets of a wide body


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object nested at most MAX_DEPTH levels, else a 400 saying what to fix."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024 levels)
            raise _too_deep() from None
        raise errors.bad_request(f"request body is not valid JSON ({exc}); send a JSON object",
                                 code="invalid_json") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("request body must be a JSON object", code="invalid_json")
    if _nests_deeper(body, MAX_DEPTH):
        raise _too_deep()
    return payload


def _too_deep() -> errors.GatewayError:
    return errors.bad_request(f"request body nests JSON deeper than {MAX_DEPTH} levels; flatten the "
                              "deepest value (metadata, content, tools or prompt)", code="invalid_json")


def _nests_deeper(body: bytes, limit: int) -> bool:
    """Whether valid JSON `body` nests more than `limit` levels, in C-speed passes over bytes.

    A crafted 1 MiB body costs ~35 ms here, about what orjson took to parse it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # too few brackets to nest that deep: nearly every request
    # Brackets inside strings are text. Escaped backslashes go first, so that in what is left
    # every \" is an escaped quote; without both, each second piece between quotes is a string.
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(text.split(b'"')[::2]).translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(_PEELED):
        brackets = brackets.replace(b"[]", b"")  # one pass removes exactly the innermost level
        if not brackets:
            return False
    # What is left alternates runs of [ and ]: the deepest point is the largest running sum.
    deepest = max(accumulate(map(mul, map(len, _RUNS.findall(brackets)), cycle((1, -1)))))
    return _PEELED + deepest > limit
