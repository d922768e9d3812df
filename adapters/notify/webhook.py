"""Signed webhooks: a CloudEvents 1.0 JSON envelope POSTed to the rule's URL.

Headers: `X-Meterline-Signature` (domain/webhook_signature.py), `webhook-id` (the notification
id, for the receiver to drop a repeat). 2xx is delivered; 408, 429, 5xx, timeouts and refused
connections are transient; any other status (a redirect, 400, 404, 410) is permanent: the URL
or the receiver needs fixing, not a retry. Redirects are not followed (they could lead past the
address check) and at most a few hundred bytes of a response are read.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters.notify.body import data_of, event_type, text_of, to_json
from adapters.notify.once import OnceById
from adapters.notify.webhook_target import Target, resolve_target
from domain.ports.notifier import Notification, NotificationFailed
from domain.webhook_signature import HEADER, sign

RESPONSE_CAP = 512  # bytes of a refusal kept for its message
TRANSIENT_STATUS = frozenset({408, 429})
Resolver = Callable[[str, bool], Awaitable[Target]]


def envelope(notification: Notification, now: datetime) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode event; `text` is an extension attribute."""
    return {"specversion": "1.0", "id": notification.notification_id, "source": "meterline",
            "type": event_type(notification), "subject": notification.subject,
            "time": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json", "text": text_of(notification),
            "data": data_of(notification)}


class WebhookNotifier:
    def __init__(self, allow_private: bool = False, timeout_s: float = 5.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 resolve: Resolver = resolve_target, trusted: ssl.SSLContext | None = None) -> None:
        """`resolve` and `trusted` (the certificates to trust, default the system's) are for tests
        that stand in for DNS and a public CA."""
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self._now = now
        self._resolve = resolve
        # no proxies from the environment: the address check must be about where we connect
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)), follow_redirects=False,
            trust_env=False, verify=trusted or True, headers={"User-Agent": "meterline-webhooks/1"})
        self._once = OnceById()

    async def notify(self, notification: Notification) -> None:
        if not notification.signing_secret:
            raise NotificationFailed(f"webhook notification {notification.notification_id} has no signing "
                                     "secret; a webhook is only sent signed (the rule's secret)",
                                     permanent=True)
        await self._once.run(notification.notification_id, lambda: self._send(notification))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, notification: Notification) -> None:
        try:
            # the whole exchange is bounded, name resolution included: a server trickling bytes
            # would outlast per-read timeouts
            async with asyncio.timeout(self.timeout_s + 1):
                status, refusal, location = await self._post(notification)
        except TimeoutError:
            raise NotificationFailed(f"webhook {_origin(notification.recipient)} did not answer within "
                                     f"{self.timeout_s:g} s") from None
        except httpx.HTTPError as error:
            raise NotificationFailed(f"webhook {_origin(notification.recipient)} could not be reached: "
                                     f"{type(error).__name__}: {error}") from None
        if not 200 <= status < 300:
            raise _refused(status, refusal, location)

    async def _post(self, notification: Notification) -> tuple[int, str, str]:
        """(status, the first bytes of a refusal, a redirect's location)."""
        target = await self._resolve(notification.recipient, self.allow_private)
        now = self._now()
        body = to_json(envelope(notification, now))
        # a new connection each time: one kept open to a shared address (a CDN) was set up, TLS
        # and all, for another host name, and must not carry this one's request
        headers = {"Host": target.netloc, "Connection": "close",
                   "Content-Type": "application/cloudevents+json; charset=utf-8",
                   "webhook-id": notification.notification_id,
                   HEADER: sign(notification.signing_secret or "", int(now.timestamp()), body)}
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        async with self._client.stream("POST", target.url, content=body, headers=headers,
                                       extensions=extensions) as response:
            if 200 <= response.status_code < 300:
                return response.status_code, "", ""
            return (response.status_code, await _first_bytes(response),
                    response.headers.get("location", "?"))


def _origin(url: str) -> str:
    """scheme://host[:port] only: a webhook's path often holds a token (Slack's do), and errors
    are stored and shown."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "(an unreadable URL)"
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


async def _first_bytes(response: httpx.Response) -> str:
    kept = b""
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= RESPONSE_CAP:
            break
    return kept[:RESPONSE_CAP].decode(errors="replace")


def _refused(status: int, refusal: str, location: str) -> NotificationFailed:
    what = f"webhook answered {status}"
    if 300 <= status < 400:
        what += f" (a redirect to {location[:200]!r}, not followed: update the URL)"
    elif refusal.strip():
        what += f": {' '.join(refusal.split())[:200]}"
    return NotificationFailed(what, permanent=not (status >= 500 or status in TRANSIENT_STATUS))
