"""Writes a complete JSON answer, or a stream's body chunks, straight to uvicorn's connection,
skipping the ASGI send.

uvicorn's `send` checks every header against two regular expressions and builds the
answer from two message dicts: about 15 µs per request, half of uvicorn's own cost.
The hot path's answers are already-encoded JSON with headers of our own making, so the
fast path writes status line, uvicorn's default headers (server, date) and body in one
write, then finishes the request exactly as uvicorn's `send` does (keep-alive or close,
then the next pipelined request).

Only with uvicorn's httptools protocol, only when nothing is unusual (a paused or closed
transport, a response already started); otherwise the caller sends through ASGI. It
writes no access-log line: Meterline runs uvicorn without an access log, and every /v1
request is recorded as a RequestMetered fact anyway.
tests/integration/test_gateway_http.py holds both to the bytes uvicorn's `send` writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.responses import JsonBytesResponse

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle
except ImportError:  # another server: always the ASGI path
    RequestResponseCycle = None
    STATUS_LINE = {}


def write_json(send: Any, response: JsonBytesResponse) -> bool:
    """True if the answer went out directly; False if the caller must send it through ASGI."""
    cycle = getattr(send, "__self__", None)
    if RequestResponseCycle is None or type(cycle) is not RequestResponseCycle:
        return False
    try:  # every attribute is read before anything is written: a uvicorn that renamed one
        transport, keep_alive, finished = cycle.transport, cycle.keep_alive, cycle.on_response
        usable = not (cycle.response_started or cycle.disconnected or cycle.flow.write_paused
                      or transport.is_closing())
        default_headers, message_event = cycle.default_headers, cycle.message_event
    except AttributeError:  # ... gets the ASGI path, not a broken answer
        return False
    if not usable or response.status_code not in STATUS_LINE:
        return False
    parts = [STATUS_LINE[response.status_code]]
    for name, value in default_headers:
        parts += (name, b": ", value, b"\r\n")
    for name, value in response.raw_headers:
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", response.body)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    transport.write(b"".join(parts))
    cycle.response_complete = True
    message_event.set()
    if not keep_alive:
        transport.close()
    finished()
    return True


def body_writer(send: Any) -> Callable[[bytes], bool] | None:
    """For a streamed answer whose head went out through `send`: a function writing one body
    chunk straight to the connection, with uvicorn's chunked framing, and saying False when the
    caller must send it through ASGI instead (a paused, closed or finished connection). None
    when `send` is not uvicorn's httptools cycle or the answer is not chunked.

    A stream sends ~20 chunks per answer, so this saves ASGI's message dict and checks per
    chunk; the last, empty chunk still goes through `send`, which ends the answer as usual."""
    cycle = getattr(send, "__self__", None)
    if RequestResponseCycle is None or type(cycle) is not RequestResponseCycle:
        return None
    try:
        transport, flow = cycle.transport, cycle.flow
        if cycle.chunked_encoding is not True or cycle.scope["method"] == "HEAD":
            return None
    except (AttributeError, KeyError):
        return None

    def write(body: bytes) -> bool:
        if flow.write_paused or cycle.disconnected or cycle.response_complete:
            return False
        if body:
            transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True

    return write
