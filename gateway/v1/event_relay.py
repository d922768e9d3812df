"""SSE relay for the named-event APIs (Responses, Messages), metered as chat streams are.

The rules of gateway/v1/streaming.py hold here too: events go to the client as they come;
the event that carries the final usage and everything after it (`response.completed`,
`message_delta`, `message_stop`) are held until the usage is durably metered, and replaced by
an error event if metering fails; a long stream is metered in parts, one token per text delta
until the upstream's own count arrives; a client that leaves mid-stream is metered for what
was generated. Each event is written back as `event: <type>` + `data: <json>`, the form both
SDKs read; the upstream's `event:` lines are not needed, its `data` names the type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from domain.ports.upstream import UpstreamStream, UpstreamTimeout, UpstreamUnavailable
from domain.pricing import Usage
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from gateway.v1.admission import Admitted
from gateway.v1.dialects import EventStream
from gateway.v1.metering import StreamBill, meter


def encode(event: dict[str, Any]) -> bytes:
    kind = event.get("type")
    head = b"event: " + kind.encode() + b"\n" if isinstance(kind, str) and kind.isprintable() else b""
    return head + b"data: " + orjson.dumps(event) + b"\n\n"


async def relay(ctx: GatewayContext, adm: Admitted, upstream: UpstreamStream, started: float,
                bill: StreamBill, reader: EventStream) -> AsyncIterator[bytes]:
    generated = 0
    held: list[bytes] = []
    metered = False
    status = 200
    deltas = 0  # text deltas so far: a lower bound of the completion tokens
    every_tokens, every_s = ctx.options.stream_progress_tokens, ctx.options.stream_progress_s
    next_part_at, part_deadline = every_tokens, time.monotonic() + every_s

    async def settle(disconnected: bool) -> None:
        nonlocal metered
        metered = True
        await meter(ctx, adm, status=status, usage=reader.usage, started=started, stream=True,
                    disconnected=disconnected, generated_bytes=generated,
                    bill=bill if bill.parts else None, fact_id=None if bill.parts else bill.request_id)

    async def progress() -> None:
        nonlocal next_part_at, part_deadline
        so_far = reader.usage if reader.usage is not None else Usage(0, deltas)
        if so_far.total_tokens > bill.usage.total_tokens:
            await meter(ctx, adm, status=status, usage=so_far, started=started, stream=True,
                        bill=bill, final=False)
        next_part_at, part_deadline = deltas + every_tokens, time.monotonic() + every_s

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
            if not isinstance(event, dict):
                continue
            text_bytes, ends = reader.step(event)
            generated += text_bytes
            deltas += text_bytes > 0
            if held or ends:
                held.append(encode(event))
                continue
            if deltas >= next_part_at or time.monotonic() >= part_deadline:
                await progress()
            yield encode(event)
        await settle(disconnected=False)
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        status = 504 if isinstance(exc, UpstreamTimeout) else 502
        ctx.metrics.upstream_error(adm.route.name, "timeout" if status == 504 else "unavailable")
        await settle(disconnected=False)
        for event in held:
            yield event
        yield encode(reader.error_event(f"the model server failed mid-stream ({exc}); the partial "
                                        "answer above was metered", "upstream_error"))
        return
    except GatewayError as exc:  # metering failed: withhold the end of the answer
        yield encode(reader.error_event(exc.message, exc.code or "metering_unavailable"))
        return
    except BaseException:
        # The client went away (cancellation) or something broke: meter what was generated.
        if not metered:
            task = asyncio.ensure_future(settle(disconnected=True))
            await asyncio.shield(task)
        raise
    finally:
        await upstream.close()
    for event in held:
        yield event
