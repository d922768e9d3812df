"""The upstream port on httpx: pooled keep-alive connections to OpenAI-compatible servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from domain.ports import UpstreamResponse, UpstreamTimeout, UpstreamUnavailable

JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}


class HttpxStream:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = dict(response.headers)

    async def lines(self) -> AsyncIterator[bytes]:
        try:
            async for line in self._response.aiter_lines():
                yield line.encode()
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc) or "upstream stream timed out") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from exc

    async def read(self) -> bytes:
        return await self._response.aread()

    async def close(self) -> None:
        await self._response.aclose()


class HttpxUpstream:
    def __init__(self, max_connections: int = 256, api_key: str | None = None) -> None:
        limits = httpx.Limits(max_connections=max_connections,
                              max_keepalive_connections=max_connections)
        headers = dict(JSON_HEADERS)
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(limits=limits, headers=headers, http2=False)

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse:
        try:
            response = await self._client.post(url, content=body, timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"no answer from {url} within {timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"{url}: {exc or type(exc).__name__}") from exc
        return UpstreamResponse(response.status_code, dict(response.headers), response.content)

    async def stream(self, url: str, body: bytes, timeout_s: float) -> HttpxStream:
        request = self._client.build_request("POST", url, content=body, timeout=timeout_s)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"no answer from {url} within {timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"{url}: {exc or type(exc).__name__}") from exc
        return HttpxStream(response)

    async def close(self) -> None:
        await self._client.aclose()
