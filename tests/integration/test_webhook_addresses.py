"""Where a webhook is never sent unless METERLINE_WEBHOOK_ALLOW_PRIVATE allows it: loopback,
private, link-local (the cloud metadata service), shared, multicast and unspecified addresses,
by literal or by a name that resolves to one; URLs that are not http(s) or carry credentials."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from adapters.notify.webhook import WebhookNotifier
from adapters.notify.webhook_target import is_public, resolve_target
from domain.ports.notifier import Notification, NotificationFailed
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

SECRET = "whsec-ssrf-tests-0a1b2c3d"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(SECRET) as running:
        yield running


async def refusal(url: str, allow_private: bool = False) -> NotificationFailed:
    notifier = WebhookNotifier(allow_private=allow_private, timeout_s=1.0)
    try:
        with pytest.raises(NotificationFailed) as failed:
            await notifier.notify(Notification("s-1", url, "probe", {}, signing_secret=SECRET))
    finally:
        await notifier.aclose()
    return failed.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0",
                                  "127.1.2.3"])
async def test_a_loopback_target_is_refused_without_a_connection(receiver: WebhookReceiver,
                                                                 host: str) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    failed = await refusal(f"http://{host}:{port}/hooks/a")
    assert failed.permanent and "not a public address" in str(failed)
    assert receiver.hits == {}


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/hook", "http://172.16.3.4/hook", "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/hook", "http://[fd00::1]/hook",
    "http://100.64.0.1/hook", "http://224.0.0.1/hook", "http://240.0.0.1/hook", "https://10.1.1.1:8443/"])
async def test_private_link_local_shared_multicast_and_reserved_targets_are_refused(url: str) -> None:
    failed = await refusal(url)
    assert failed.permanent and "not a public address" in str(failed)


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/hook", "only http"), ("file:///etc/passwd", "only http"),
    ("gopher://example.com/", "only http"), ("http:///no-host", "only http"),
    ("http://user:pass@example.com/hook", "user name or password"),
    ("https://token@example.com/hook", "user name or password"), ("http://exa mple.com/", "not a host name"),
    ("https://example.com/" + "a" * 2100, "longer than")])
async def test_urls_that_are_not_plain_http_or_carry_credentials_are_refused(url: str, why: str) -> None:
    failed = await refusal(url)
    assert failed.permanent and why in str(failed)


async def test_private_targets_are_allowed_when_the_setting_says_so(receiver: WebhookReceiver) -> None:
    notifier = WebhookNotifier(allow_private=True)
    await notifier.notify(Notification("ok-1", receiver.url("/hooks/a"), "allowed", {},
                                       signing_secret=SECRET))
    await notifier.aclose()
    assert len(receiver.taken) == 1


async def test_a_public_target_is_pinned_to_the_checked_address_keeping_its_host_name() -> None:
    target = await resolve_target("https://93.184.216.34:8443/hooks?x=1", allow_private=False)
    assert (str(target.url), target.netloc) == ("https://93.184.216.34:8443/hooks?x=1", "93.184.216.34:8443")


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True), ("8.8.8.8", True),
    ("127.0.0.1", False), ("::1", False), ("10.0.0.1", False), ("169.254.169.254", False),
    ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True), ("ff02::1", False), ("0.0.0.0", False),
    ("192.0.2.1", False), ("198.18.0.1", False), ("::127.0.0.1", False), ("64:ff9b::a9fe:a9fe", False),
    ("64:ff9b::808:808", True), ("2002:a9fe:a9fe::1", False), ("2002:808:808::1", True),
    ("64:ff9b:1::a00:1", False), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False)])
def test_only_globally_routable_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
