"""A real webhook receiver on loopback (aiohttp, in the test's event loop) that does what
docs/webhooks.md tells a customer to: verify the signature with domain.webhook_signature,
refuse a stale or unsigned request, and drop an id it has already taken (answering 200, so
the sender does not retry). Also endpoints that answer 410, 500, a redirect, or too slowly."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.notify.body import render
from domain.ports.notifier import DEFAULT_TYPE, Notification
from domain.webhook_signature import HEADER, SignatureInvalid, verify


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    raw: bytes
    event: dict[str, Any]


@dataclass
class WebhookReceiver:
    secret: str
    tolerance_s: float = 300
    base_url: str = ""
    taken: list[Delivery] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why each refused request was refused
    replays: list[str] = field(default_factory=list)  # ids dropped as already taken
    hits: dict[str, int] = field(default_factory=dict)  # requests per path, taken or not

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def events_at(self, path: str) -> list[dict[str, Any]]:
        return [d.event for d in self.taken if d.path == path]

    async def hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        try:
            verify(self.secret, request.headers.get(HEADER), raw, time.time(), self.tolerance_s)
        except SignatureInvalid as refused:
            self.refused.append(str(refused))
            return web.Response(status=400, text=str(refused))
        webhook_id = request.headers.get("webhook-id", "")
        if any(d.headers.get("webhook-id") == webhook_id for d in self.taken):
            self.replays.append(webhook_id)
            return web.Response(status=200, text="already received")
        self.taken.append(Delivery(request.path, dict(request.headers), raw, json.loads(raw)))
        return web.Response(status=204)

    async def answer(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        status = int(request.match_info["status"])
        if 300 <= status < 400:
            raise web.HTTPFound(self.url("/hooks/redirected"))
        return web.Response(status=status, text=f"answered {status} " + "x" * 100_000)

    async def slow(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        await asyncio.sleep(60)
        return web.Response(status=204)


@asynccontextmanager
async def webhook_receiver(secret: str, tolerance_s: float = 300,
                           tls: ssl.SSLContext | None = None) -> AsyncIterator[WebhookReceiver]:
    """On 127.0.0.1; with `tls`, over https (base_url then names the address, not a host name)."""
    receiver = WebhookReceiver(secret, tolerance_s)
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.hook)
    app.router.add_post("/status/{status}", receiver.answer)
    app.router.add_post("/slow", receiver.slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    receiver.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def notification_from(event: dict[str, Any], url: str) -> Notification:
    """The notification a CloudEvent was sent for: a body in the alert convention comes back
    whole; a body sent as is is the event's data (its type the default, its text a rendering)."""
    data = event["data"]
    sent_as_is = event["type"] == DEFAULT_TYPE and isinstance(data, dict) and event["text"] == render(data)
    body = data if sent_as_is else {"type": event["type"], "text": event["text"], "data": data}
    return Notification(event["id"], url, event["subject"], body)
