"""The pool's per-wait deadline, kept by one lazily moved timer per connection: a stream that
stalls after some chunks still times out on time, and a connection reused with a shorter
timeout than its last request's is not held to the old, longer one."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.upstream.pool import UpstreamPool
from domain.ports.upstream import UpstreamTimeout

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def stalling_server(chunks: int, gap_s: float) -> tuple[asyncio.Server, str]:
    """Answers each request on a connection with `chunks` events `gap_s` apart, then stalls."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                writer.write(HEAD)
                for n in range(chunks):
                    writer.write(chunk(b"data: {\"n\": %d}\n\n" % n))
                    await writer.drain()
                    await asyncio.sleep(gap_s)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat/completions"


async def read_until_timeout(pool: UpstreamPool, url: str, timeout_s: float) -> tuple[int, float]:
    stream = await pool.stream(url, b"{}", timeout_s)
    lines, started = 0, time.monotonic()
    with pytest.raises(UpstreamTimeout):
        async for line in stream.lines():
            lines += line.startswith(b"data:")
            started = time.monotonic()  # the stall begins after the last line
    return lines, time.monotonic() - started


async def test_a_stream_that_stalls_after_some_chunks_times_out_on_time() -> None:
    server, url = await stalling_server(chunks=5, gap_s=0.1)  # each gap well inside the timeout
    pool = UpstreamPool()
    try:
        lines, stalled_for = await read_until_timeout(pool, url, 0.4)
    finally:
        await pool.close()
        server.close()
    assert lines == 5  # a wait woken in time never expires
    assert 0.3 <= stalled_for < 1.2  # neither early nor held to a stale, later deadline


async def test_a_wait_shorter_than_the_armed_deadline_times_out_by_the_shorter_one() -> None:
    server, url = await stalling_server(chunks=1, gap_s=0.0)
    pool = UpstreamPool()
    try:
        stream = await pool.stream(url, b"{}", 30.0)  # arms the connection's timer 30 s ahead
        async for _ in stream.lines():
            break
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):  # a 0.3 s wait must not inherit the 30 s timer
            await stream._conn.next_chunk(0.3)
        assert time.monotonic() - started < 2.0
    finally:
        await pool.close()
        server.close()
