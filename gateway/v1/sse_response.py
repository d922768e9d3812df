"""An SSE answer through ASGI with one watcher task per stream, not Starlette's task group.

Starlette's StreamingResponse (for ASGI servers before spec 2.4, uvicorn among them) runs
every stream in an anyio task group with a second task listening for the disconnect: under
2,000 open streams that machinery was a third of the gateway's CPU. Here the stream is sent
from the request's own task and a plain asyncio task waits for the disconnect, then cancels
it: the relay (gateway/v1/streaming.py) sees the cancellation, meters what was generated
and hangs up on the model server, as before. Body chunks go straight to uvicorn's connection
when it is not paused (`direct_write.body_writer`), not through a message dict each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response

from gateway.v1 import direct_write

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
           (b"x-accel-buffering", b"no")]


class SseResponse(Response):
    """A Starlette Response only so that FastAPI's routes pass it through unchanged."""

    def __init__(self, chunks: AsyncIterator[bytes], request_id: str | None = None) -> None:
        self.chunks = chunks  # no super(): there is no body
        self.status_code = 200
        self.raw_headers = HEADERS if request_id is None else [
            *HEADERS, (b"x-request-id", request_id.encode("latin-1"))]
        self.background = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        stream = asyncio.current_task()
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            stream.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            write = direct_write.body_writer(send)
            async for chunk in self.chunks:
                if write is None or not write(chunk):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise  # cancelled from outside (shutdown): not ours to swallow
            stream.uncancel()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await _close(self.chunks)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
