"""The upstream port: an OpenAI-compatible model server reached over pooled HTTP connections.

Adapters: `adapters/upstream/pool.py` (HTTP) and its in-memory twin
`adapters/upstream/memory.py`; both pass `tests/contract/test_upstream.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class UpstreamUnavailable(Exception):
    """The model server could not be reached or broke the connection."""


class UpstreamTimeout(Exception):
    """The model server did not answer in time."""


class UpstreamStream(Protocol):
    status: int
    headers: dict[str, str]

    def lines(self) -> AsyncIterator[bytes]:
        """The response body line by line (SSE), without line endings."""
        ...

    async def read(self) -> bytes: ...

    async def close(self) -> None:
        """Stops reading; the upstream stops generating."""
        ...


class Upstream(Protocol):
    """An OpenAI-compatible model server reached over pooled HTTP connections."""

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse: ...

    async def stream(self, url: str, body: bytes, timeout_s: float) -> UpstreamStream: ...

    async def close(self) -> None: ...
