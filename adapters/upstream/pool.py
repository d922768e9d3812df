"""The upstream port on a small pooled HTTP/1.1 client (asyncio + httptools): the hot path.

Measured on this machine (docs/benchmarks.md): httpx's pool fell to 76 req/s at 64
concurrent connections, aiohttp's client cost ~0.3 ms of CPU per call; this client writes
each request in one send and parses with llhttp (httptools), about 0.05 ms per call.
It speaks just what OpenAI-compatible servers need: POST with a JSON body, responses
with Content-Length or chunked bodies, keep-alive, and SSE read line by line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

from domain.ports.upstream import UpstreamResponse, UpstreamTimeout, UpstreamUnavailable


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; a waiter future per wait, no tasks."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.want_headers = False
        self.headers_seen = False
        self.keep_alive = False
        self.complete = False
        self.closed = False
        self.error: Exception | None = None
        self.deadline = 0.0  # loop time by which the current wait must be woken
        self.timeout_s = 0.0
        self.what = ""
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnavailable(f"malformed response from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamUnavailable(f"upstream closed the connection ({exc or 'EOF'})"))

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()  # only valid until the message ends
        self.headers_seen = True
        if self.want_headers:
            self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        if not self.want_headers:
            self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- waiting --
    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def wait(self, timeout_s: float, what: str) -> None:
        """Waits for the next wake-up (headers, a chunk, the end), at most `timeout_s`.

        One timer per connection, moved lazily, rather than one set and cancelled per wait:
        a stream waits once per chunk, and 2,000 streams made 40,000 timers a second."""
        if self.error is not None:
            raise self.error
        self.waiter = self.loop.create_future()
        self.deadline, self.timeout_s, self.what = self.loop.time() + timeout_s, timeout_s, what
        if self.timer is None or self.timer.when() > self.deadline:  # none, or too late for this wait
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _check_deadline(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait arms the timer again
        if self.loop.time() < self.deadline:  # woken since: wait for the current deadline
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)
            return
        waiter.set_exception(UpstreamTimeout(f"no {self.what} from upstream within {self.timeout_s:g} s"))

    async def start(self, request: bytes, timeout_s: float) -> None:
        """Sends a request and waits for the response headers."""
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.chunks = 0, {}, []
        self.headers_seen = self.complete = False
        self.error = None
        self.want_headers = True
        assert self.transport is not None
        self.transport.write(request)
        while not self.headers_seen:
            await self.wait(timeout_s, "answer")
        self.want_headers = False

    async def next_chunk(self, timeout_s: float) -> bytes | None:
        """The next body bytes, or None at the end of the body."""
        while not self.chunks:
            if self.complete:
                return None
            await self.wait(timeout_s, "data")
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()


class PooledStream:
    """A streamed response; the connection returns to the pool once fully read."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int], conn: _Connection,
                 timeout_s: float) -> None:
        self._pool, self._key, self._conn, self._timeout = pool, key, conn, timeout_s
        self.status = conn.status
        self.headers = conn.headers

    async def _chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk(self._timeout)) is not None:
            yield chunk

    async def lines(self) -> AsyncIterator[bytes]:
        pending = b""
        conn, timeout_s = self._conn, self._timeout
        # next_chunk inline (one generator less per chunk: this runs once per streamed event)
        while (chunk := await conn.next_chunk(timeout_s)) is not None:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r")
        if pending:
            yield pending.rstrip(b"\r")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self._chunks()])

    async def close(self) -> None:
        self._pool.release(self._key, self._conn)


class UpstreamPool:
    def __init__(self, max_idle_per_host: int = 256, connect_timeout_s: float = 5.0,
                 api_key: str | None = None) -> None:
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._connect_timeout = connect_timeout_s
        self._extra_headers = f"Authorization: Bearer {api_key}\r\n" if api_key else ""

    def _request(self, url: str, body: bytes) -> tuple[tuple[str, int], bytes]:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise UpstreamUnavailable(f"{url}: only http:// upstreams are served by this client")
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = (f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json\r\n"
                f"{self._extra_headers}Content-Length: {len(body)}\r\n\r\n")
        return (host, port), head.encode() + body

    async def _acquire(self, key: tuple[str, int]) -> _Connection:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, key[0], key[1]), self._connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {key[0]}:{key[1]} took over "
                                  f"{self._connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}") from None
        return conn

    def release(self, key: tuple[str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        if conn.reusable and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def _start(self, url: str, body: bytes, timeout_s: float
                     ) -> tuple[tuple[str, int], _Connection]:
        key, request = self._request(url, body)
        for attempt in (1, 2):
            conn = await self._acquire(key)
            try:
                await conn.start(request, timeout_s)
                return key, conn
            except UpstreamTimeout:
                conn.close()
                raise
            except UpstreamUnavailable:
                conn.close()
                # A pooled connection the server had already closed: retry once on a new one.
                if attempt == 2 or conn.status:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def post(self, url: str, body: bytes, timeout_s: float) -> UpstreamResponse:
        key, conn = await self._start(url, body, timeout_s)
        stream = PooledStream(self, key, conn, timeout_s)
        try:
            content = await stream.read()
        except BaseException:
            conn.close()
            raise
        self.release(key, conn)
        return UpstreamResponse(conn.status, conn.headers, content)

    async def stream(self, url: str, body: bytes, timeout_s: float) -> PooledStream:
        key, conn = await self._start(url, body, timeout_s)
        return PooledStream(self, key, conn, timeout_s)

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
