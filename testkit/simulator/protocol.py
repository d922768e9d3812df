"""A minimal, fast HTTP/1.1 server on asyncio.Protocol, for the upstream simulator only.

Keep-alive, Content-Length request bodies, pipelined requests answered in order,
and chunked transfer for server-sent events. Not a general web server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 501: "Not Implemented"}
SSE_LINES = (b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
             b"Transfer-Encoding: chunked\r\n")


@dataclass(slots=True)
class Request:
    """One parsed request; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class Response:
    """A complete response body."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"


@dataclass(slots=True)
class Stream:
    """A server-sent-event response: each event is sent as one chunk."""

    events: list[bytes]
    delay_s: float = 0.0  # pause between events, to mimic token-by-token generation
    status: int = 200


Result = Response | Stream
Handler = Callable[[Request], Result | Awaitable[Result]]


def _head(status: int, lines: bytes, keep_alive: bool) -> bytes:
    conn = b"" if keep_alive else b"Connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\n%s%s\r\n" % (status, REASONS.get(status, "OK").encode(),
                                            lines, conn)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class HttpProtocol(asyncio.Protocol):
    """One connection: parse requests, call the handler, write responses in order."""

    def __init__(self, handler: Handler, connections: set) -> None:
        self._handler = handler
        self._connections = connections
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._busy = False  # an async handler is running; later requests wait in _buf

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self._transport)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    def _process(self) -> None:
        while self._transport is not None and not self._busy:
            req = self._parse()
            if req is None:
                return
            result = self._handler(req)
            if isinstance(result, Response) or (isinstance(result, Stream) and not result.delay_s):
                self._send(req, result)
                continue
            self._busy = True
            asyncio.ensure_future(self._finish(req, result))

    def _parse(self) -> Request | None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                self._fail(413)
            return None
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._fail(400)
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            self._fail(501)  # clients of an OpenAI API send Content-Length
            return None
        total = end + 4 + int(headers.get("content-length") or 0)
        if len(self._buf) < total:
            return None
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        conn = headers.get("connection", "").lower()
        keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        return Request(method, target.partition("?")[0], headers, body, keep_alive)

    async def _finish(self, req: Request, pending: Result | Awaitable[Result]) -> None:
        try:
            result = pending if isinstance(pending, Response | Stream) else await pending
            if isinstance(result, Stream) and result.delay_s:
                await self._send_slow_stream(req, result)
            else:
                self._send(req, result)
        except Exception:  # a handler bug must not hang the client
            self._send(req, Response(500, b'{"error":{"message":"simulator error"}}'))
        self._busy = False
        self._process()

    def _send(self, req: Request, result: Result) -> None:
        if self._transport is None:
            return
        if isinstance(result, Response):
            lines = b"Content-Type: %s\r\nContent-Length: %d\r\n" % (
                result.content_type, len(result.body))
            self._transport.write(_head(result.status, lines, req.keep_alive) + result.body)
        else:
            parts = [_head(result.status, SSE_LINES, req.keep_alive)]
            parts.extend(_chunk(ev) for ev in result.events)
            parts.append(b"0\r\n\r\n")
            self._transport.write(b"".join(parts))
        if not req.keep_alive:
            self._transport.close()

    async def _send_slow_stream(self, req: Request, result: Stream) -> None:
        if self._transport is None:
            return
        self._transport.write(_head(result.status, SSE_LINES, req.keep_alive))
        for ev in result.events:
            await asyncio.sleep(result.delay_s)
            if self._transport is None:  # the client went away mid-stream
                return
            self._transport.write(_chunk(ev))
        self._transport.write(b"0\r\n\r\n")
        if not req.keep_alive:
            self._transport.close()

    def _fail(self, status: int) -> None:
        assert self._transport is not None
        self._transport.write(_head(status, b"Content-Length: 0\r\n", False))
        self._transport.close()
        self._buf.clear()
