"""A lean HTTP/1.1 load generator: N keep-alive connections, one request in flight each.

Each connection is an asyncio.Protocol that writes pre-built request bytes and parses
only what it must (status, Content-Length or chunk sizes), so one core drives well over
10k req/s and the numbers describe the server, not the client. Reused for the gateway.

CLI: python -m testkit.loadgen http://127.0.0.1:9100/v1/chat/completions \\
       --body '{"model":"m","messages":[{"role":"user","content":"hi"}]}' -c 64 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from testkit.loadstats import LoadStats, Recorder


def build_request(url: str, body: bytes | dict | None, headers: dict[str, str] | None,
                  method: str | None = None) -> tuple[str, int, bytes]:
    """(host, port, raw request bytes) for one keep-alive request."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    payload = orjson.dumps(body) if isinstance(body, dict) else (body or b"")
    method = method or ("POST" if payload else "GET")
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
    if payload:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def response_end(buf: bytearray) -> tuple[int, int] | None:
    """(status, length) of the first complete response in buf, or None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        total = end + 4 + int(head[i + 17 : j if j >= 0 else len(head)])
        return (status, total) if len(buf) >= total else None
    if b"chunked" not in head:
        return status, end + 4  # no body framing: a bodiless answer such as 204
    pos = end + 4
    while True:  # walk the chunk sizes; the terminal chunk is "0\r\n\r\n" (no trailers)
        j = buf.find(b"\r\n", pos)
        if j < 0:
            return None
        size = int(bytes(buf[pos:j]).split(b";")[0], 16)
        pos = j + 2 + size + 2
        if size == 0:
            return (status, pos) if len(buf) >= pos else None
        if pos > len(buf):
            return None


class _Connection(asyncio.Protocol):
    """One client connection: send, wait for the full response, record, repeat."""

    def __init__(self, request: bytes, rec: Recorder, done: asyncio.Future) -> None:
        self._request, self._rec, self._done = request, rec, done
        self._buf = bytearray()
        self._t0 = 0.0
        self._inflight = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if not self._rec.take():
            self._transport.close()
            return
        self._inflight, self._t0 = True, time.perf_counter()
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        found = response_end(self._buf)
        if found is None:
            return
        status, length = found
        del self._buf[:length]
        self._inflight = False
        self._rec.record(status, time.perf_counter() - self._t0)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inflight:
            self._rec.record(0, time.perf_counter() - self._t0)  # status 0: connection lost
        if not self._done.done():
            self._done.set_result(None)


async def _drive(host: str, port: int, request: bytes, rec: Recorder) -> None:
    loop = asyncio.get_running_loop()
    while not rec.finished():
        done = loop.create_future()
        try:
            await loop.create_connection(partial(_Connection, request, rec, done), host, port)
        except OSError:
            if rec.take():  # a refused connection uses up a request, so -n still ends
                rec.record(0, 0.0)
            await asyncio.sleep(0.05)
            continue
        await done


async def arun_load(url: str, body: bytes | dict | None = None, connections: int = 64,
                    duration_s: float | None = 10.0, total_requests: int | None = None,
                    headers: dict[str, str] | None = None,
                    method: str | None = None) -> LoadStats:
    """Drive url from the running loop until duration_s passes or total_requests are sent."""
    host, port, request = build_request(url, body, headers, method)
    rec = Recorder(total_requests, None if total_requests else duration_s)
    await asyncio.gather(*(_drive(host, port, request, rec) for _ in range(connections)))
    return rec.stats()


def run_load(url: str, body: bytes | dict | None = None, connections: int = 64,
             duration_s: float | None = 10.0, total_requests: int | None = None,
             headers: dict[str, str] | None = None, method: str | None = None) -> LoadStats:
    """Blocking arun_load on a fresh loop (uvloop if installed)."""
    coro = arun_load(url, body, connections, duration_s, total_requests, headers, method)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> None:
    """CLI entry: print one summary line (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m testkit.loadgen")
    ap.add_argument("url")
    ap.add_argument("--body", help="JSON request body; omit for GET")
    ap.add_argument("--body-file")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("-n", "--requests", type=int, default=None)
    ap.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    body = Path(a.body_file).read_bytes() if a.body_file else (a.body or "").encode()
    headers = dict(h.split(":", 1) for h in a.header)
    stats = run_load(a.url, body, a.connections, a.duration, a.requests,
                     {k.strip(): v.strip() for k, v in headers.items()})
    print(orjson.dumps(stats.summary()).decode() if a.json else stats)


if __name__ == "__main__":
    main()
