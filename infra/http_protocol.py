"""uvicorn's httptools protocol with the limits a public server needs and uvicorn lacks.

uvicorn times out only idle keep-alive connections: a client that sends half a request
(headers without their closing blank line, or a body shorter than its Content-Length), or
nothing at all after connecting, holds a connection and its descriptor forever (500 such
clients held 574 descriptors). Here every connection must finish each request it starts,
and its first request, within `request_timeout_s`, or it is answered 408 (when nothing was
answered yet) and closed. A connection beyond `max_connections` is answered 503 with
`Connection: close` at once, in the API's error shape.

The check is a sweep once a second over open connections rather than a timer per request:
the hot path pays one clock read per request, not a timer set and cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SWEEP_S = 1.0
RESERVED_DESCRIPTORS = 128  # the stores, the journal, logs, chDB
log = logging.getLogger(__name__)


def _error(status: int, reason: str, message: str, code: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": code}})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    request_timeout_s: float = 30.0
    max_connections: int = 1000
    _sweeper: asyncio.TimerHandle | None = None

    @classmethod
    def configured(cls, request_timeout_s: float, max_connections: int) -> type[GuardedHttpToolsProtocol]:
        """A subclass carrying these limits (uvicorn builds protocols from a class)."""
        return type(cls.__name__, (cls,), {"request_timeout_s": request_timeout_s,
                                           "max_connections": descriptor_bound(max_connections),
                                           "_sweeper": None})

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.incomplete_since: float | None = time.monotonic()  # until the first request ends
        if len(self.connections) > self.max_connections:
            transport.write(_error(503, "Service Unavailable",
                                   f"this server holds its maximum of {self.max_connections} "
                                   "connections; retry shortly", "too_many_connections"))
            transport.close()
            return
        self._arm_sweeper()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.incomplete_since = time.monotonic()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.incomplete_since = None

    def _arm_sweeper(self) -> None:
        cls = type(self)
        if cls._sweeper is None:
            cls._sweeper = self.loop.call_later(SWEEP_S, cls._sweep, self.loop, self.connections)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop, connections: set) -> None:
        cls._sweeper = None
        deadline = time.monotonic() - cls.request_timeout_s
        for conn in list(connections):
            since = getattr(conn, "incomplete_since", None)
            if since is not None and since < deadline and not conn.transport.is_closing():
                conn.expire_incomplete_request()
        if connections:
            cls._sweeper = loop.call_later(SWEEP_S, cls._sweep, loop, connections)

    def expire_incomplete_request(self) -> None:
        answered = self.cycle is not None and self.cycle.response_started
        if not answered:
            self.transport.write(_error(408, "Request Timeout",
                                        f"the request was not complete within {self.request_timeout_s:g} s; "
                                        "send the whole request at once", "request_timeout"))
        self.transport.close()


def descriptor_bound(wanted: int) -> int:
    """The connections this process can hold: it raises its own descriptor limit as far as
    the system allows, and each client connection may need a second descriptor upstream."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return wanted
    bound = max(1, (soft - RESERVED_DESCRIPTORS) // 2)
    if bound < wanted:
        log.warning("METERLINE_MAX_CONNECTIONS=%d is more than %d open files allow; holding %d",
                    wanted, soft, bound)
    return min(wanted, bound)
