"""SSE streams of every /v1 API: pass events through, meter before the end leaves, survive
disconnects. What differs between APIs is the stream reader (`StreamReader`): chat's
`ChatStream` here, Responses' and Messages' in responses_api.py and messages_api.py.

Content events go to the client as they come; what ends the answer (a chat chunk with a
`finish_reason`, the usage chunk, `[DONE]`; Responses' `response.completed`; Messages'
`message_delta` and `message_stop`) is held back until the request's usage is durably
metered, and if metering fails the client gets an error event in its place. (An earlier
version held back every chunk until the next arrived: the first token then waited a whole
chunk interval.) The chat usage chunk the gateway asked for is hidden from clients that did
not ask for it themselves. A client that goes away mid-stream is metered for what was
generated up to then.

A stream that runs long is metered in parts, so a crash of the gateway loses at most one
part of its bill: every `stream_progress_tokens` content events or `stream_progress_s`
seconds a progress fact is published (durably, before the next event is relayed). Until
the model server reports usage, a part counts one completion token per content event: a
lower bound (an event carries at least one token), so the final part only ever adds to
the parts before it and the total is the model server's own count. Prompt tokens are
known only from the model server's usage, so a crash before it arrives loses them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from domain.ports.upstream import UpstreamStream, UpstreamTimeout, UpstreamUnavailable
from domain.pricing import Usage
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from gateway.v1.admission import Admitted
from gateway.v1.metering import StreamBill, choice_text_bytes, meter, parse_usage
from gateway.v1.sse import data_event

DONE = b"data: [DONE]\n\n"


class StreamReader(Protocol):
    """One API's view of its stream: what each event generated, whether it ends the answer."""

    usage: Usage | None  # the model server's count, once an event carried it
    tail: bytes          # written after the held events (chat's [DONE])

    def step(self, event: dict[str, Any]) -> tuple[int, bool] | None:
        """(generated text bytes, ends the answer), or None to drop the event; may rewrite it."""
        ...

    def encode(self, event: dict[str, Any], raw: bytes | None = None) -> bytes:
        """The event as the client gets it; `raw` is its upstream JSON, usable if unchanged."""
        ...

    def error_event(self, message: str, code: str) -> dict[str, Any]: ...


class ChatStream:
    """Chat and completions chunks: usage in a last chunk the gateway asks for."""

    tail = DONE

    def __init__(self, payload: dict[str, Any]) -> None:
        self.client_model = payload["model"]
        self.wants_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        self.usage: Usage | None = None
        self.rewritten = False  # did the last step change its chunk?

    def step(self, chunk: dict[str, Any]) -> tuple[int, bool] | None:
        self.rewritten = False
        if "usage" in chunk and chunk["usage"] is not None:
            self.usage = parse_usage(chunk["usage"]) or self.usage
            if not chunk.get("choices") and not self.wants_usage:
                return None  # the usage chunk only the gateway asked for
            if not self.wants_usage:
                chunk.pop("usage", None)
                self.rewritten = True
        text_bytes = choice_text_bytes(chunk)
        if "model" in chunk and chunk["model"] != self.client_model:
            chunk["model"] = self.client_model  # the client sees the name it asked for
            self.rewritten = True
        return text_bytes, _ends_answer(chunk)

    def encode(self, event: dict[str, Any], raw: bytes | None = None) -> bytes:
        """The upstream's own bytes when the chunk went through unchanged (most do: no
        re-encoding per token), else the chunk written again."""
        if raw is not None and not self.rewritten and b"\r" not in raw:  # \r would end an SSE line
            return b"data: " + raw + b"\n\n"
        return data_event(event)

    @staticmethod
    def error_event(message: str, code: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "api_error", "param": None, "code": code}}


async def relay(ctx: GatewayContext, adm: Admitted, upstream: UpstreamStream, started: float,
                bill: StreamBill | None = None, reader: StreamReader | None = None) -> AsyncIterator[bytes]:
    reader = reader or ChatStream(adm.payload)
    generated = 0
    held: list[bytes] = []  # what ends the answer: released once metered
    metered = False
    status = 200
    bill = bill or StreamBill()
    chunks = 0  # content events so far: a lower bound of the completion tokens
    every_tokens, every_s = ctx.options.stream_progress_tokens, ctx.options.stream_progress_s
    next_part_at, part_deadline = every_tokens, time.monotonic() + every_s

    async def settle(disconnected: bool) -> None:
        nonlocal metered
        metered = True
        await meter(ctx, adm, status=status, usage=reader.usage, started=started, stream=True,
                    disconnected=disconnected, generated_bytes=generated,
                    bill=bill if bill.parts else None,
                    # metered in one fact: that fact takes the id the answer's head announced
                    fact_id=None if bill.parts else bill.request_id)

    async def progress() -> None:
        nonlocal next_part_at, part_deadline
        so_far = reader.usage if reader.usage is not None else Usage(0, chunks)
        if so_far.total_tokens > bill.usage.total_tokens:
            await meter(ctx, adm, status=status, usage=so_far, started=started, stream=True,
                        bill=bill, final=False)
        next_part_at, part_deadline = chunks + every_tokens, time.monotonic() + every_s

    try:
        async for line in upstream.lines():
            if not line.startswith(b"data:"):
                continue  # `event:` lines, comments, blank lines: the data names its type
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if type(event) is not dict:
                continue
            step = reader.step(event)
            if step is None:
                continue
            text_bytes, ends = step
            generated += text_bytes
            if text_bytes:
                chunks += 1
            encoded = reader.encode(event, data)
            if held or ends:
                held.append(encoded)
                continue
            if chunks >= next_part_at or time.monotonic() >= part_deadline:
                await progress()
            yield encoded
        await settle(disconnected=False)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        status = 504 if isinstance(exc, UpstreamTimeout) else 502
        ctx.metrics.upstream_error(adm.route.name, "timeout" if status == 504 else "unavailable")
        await settle(disconnected=False)
        for encoded in held:
            yield encoded
        yield reader.encode(reader.error_event(f"the model server failed mid-stream ({exc}); the "
                                               "partial answer above was metered", "upstream_error"))
        return
    except GatewayError as exc:  # metering failed: withhold the end of the answer
        yield reader.encode(reader.error_event(exc.message, exc.code or "metering_unavailable"))
        return
    except BaseException:
        # The client went away (cancellation) or something broke: meter what was generated.
        if not metered:
            task = asyncio.ensure_future(settle(disconnected=True))
            await asyncio.shield(task)
        raise
    finally:
        await upstream.close()
    if held or reader.tail:  # the end of the answer in one write (one packet, one wake-up of the client)
        yield b"".join(held) + reader.tail


def _ends_answer(chunk: dict[str, Any]) -> bool:
    """A chunk that finishes a choice, or carries no choice at all (usage)."""
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return True
    return any(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)
