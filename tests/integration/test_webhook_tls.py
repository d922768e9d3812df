"""An https webhook goes to the address that was checked, yet TLS still proves the host name:
the certificate is verified against the URL's name (sent as SNI), not against the address."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from adapters.notify.webhook import WebhookNotifier
from adapters.notify.webhook_target import Target
from domain.ports.notifier import Notification, NotificationFailed
from tests.support.tls import certificate_for
from tests.support.webhook_receiver import webhook_receiver

SECRET = "whsec-tls-tests-77aa"
HOST = "hooks.customer.example"


def pinned_to(receiver_url: str):
    """Stands in for DNS and the address check: HOST is at the receiver's address."""
    async def resolve(url: str, allow_private: bool) -> Target:
        parsed = httpx.URL(url)
        return Target(parsed.copy_with(host="127.0.0.1", port=httpx.URL(receiver_url).port), parsed.host,
                      parsed.netloc.decode())
    return resolve


async def test_a_pinned_https_webhook_verifies_the_certificate_of_its_host_name(tmp_path: Path) -> None:
    server_tls, trusting = certificate_for(HOST, tmp_path)
    async with webhook_receiver(SECRET, tls=server_tls) as receiver:
        notifier = WebhookNotifier(resolve=pinned_to(receiver.base_url), trusted=trusting)
        await notifier.notify(Notification("tls-1", f"https://{HOST}/hooks/a", "over TLS", {},
                                           signing_secret=SECRET))
        await notifier.aclose()
    [delivery] = receiver.taken
    assert delivery.headers["Host"] == HOST


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    server_tls, trusting = certificate_for("someone-else.example", tmp_path)
    async with webhook_receiver(SECRET, tls=server_tls) as receiver:
        notifier = WebhookNotifier(resolve=pinned_to(receiver.base_url), trusted=trusting)
        with pytest.raises(NotificationFailed, match="could not be reached"):
            await notifier.notify(Notification("tls-2", f"https://{HOST}/hooks/a", "over TLS", {},
                                               signing_secret=SECRET))
        await notifier.aclose()
    assert receiver.taken == []
