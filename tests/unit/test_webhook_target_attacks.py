"""What an attacker's pass found in the rules a webhook host, an e-mail recipient and a rule name
must follow: each disguise of a private address is refused where the rule is set (not only when
the channel sends), an address a rule accepts is one the SMTP channel sends to, and neither an
address nor a name can carry a line break into a message."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.notify.email_message import build_message, is_address
from adapters.notify.webhook_target import resolve_target
from domain.alerts.rule_spec import AlertRuleError, is_email, rule_spec
from domain.alerts.webhook_host import host_refusal, is_public
from domain.ports.notifier import Notification, NotificationFailed

DISGUISED = ["127.1", "127.0.1", "0x7f.0.0.1", "0177.0.0.1", "0x7f000001", "2130706433", "0",
             "0251.0376.0251.0376", "169.254.43518", "127.000.000.001", "08.8.8.8", "1.2.3.4.5"]
PRIVATE = ["127.0.0.1", "0.0.0.0", "10.1.2.3", "169.254.169.254", "::1", "::", "::ffff:127.0.0.1",
           "::ffff:7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::", "::127.0.0.1", "fe80::1%eth0", "fc00::1",
           "100.64.0.1", "１２７.０.０.１", "①②⑦.0.0.1", "127.0.0.1.", "LOCALHOST", "intranet",
           "db.internal", "printer.local", "app.localhost", "router.home.arpa"]


@pytest.mark.parametrize("host", DISGUISED)
def test_an_ipv4_address_in_a_short_octal_or_hex_form_is_refused_as_a_host(host: str) -> None:
    assert "four decimal numbers" in (host_refusal(host) or "")


@pytest.mark.parametrize("host", PRIVATE)
def test_loopback_private_embedded_and_local_hosts_are_refused_however_written(host: str) -> None:
    assert host_refusal(host) is not None


@pytest.mark.parametrize("host", ["hooks.example.com", "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                                  "xn--bcher-kva.example", "a-1.example.io", "8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_and_host_names_pass(host: str) -> None:
    assert host_refusal(host) is None


@pytest.mark.parametrize("host", DISGUISED[:-3] + PRIVATE[:13])
def test_what_the_rule_check_refuses_the_channel_refuses_too(host: str) -> None:
    """The two checks agree: a host the rule refuses would not be sent to either."""
    literal = f"[{host}]" if ":" in host else host
    with pytest.raises(NotificationFailed) as refused:
        asyncio.run(resolve_target(f"http://{literal}/hook", allow_private=False))
    assert refused.value.permanent


def test_the_channel_and_the_rules_share_one_idea_of_public() -> None:
    for text in ("8.8.8.8", "10.0.0.1", "::ffff:10.0.0.1", "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe"):
        address = ipaddress.ip_address(text)
        assert is_public(address) is (host_refusal(text) is None)


@pytest.mark.parametrize("recipient", [
    "a\x00b@example.com", "a(b)@example.com", "a:b@example.com", "a[b]@example.com", "a\\b@example.com",
    "a@example.com\n", "a@example.com\r\nBcc: spy@evil.example", ".a@example.com", "ä@example.com",
    "a b@example.com"])
def test_a_rule_refuses_an_address_the_smtp_channel_would_not_send_to(recipient: str) -> None:
    """(`a..b@example.com` and the like pass as user ids, which may hold '@': they are not e-mailed as
    written but stand for that user.)"""
    with pytest.raises(AlertRuleError) as refused:
        rule_spec("r", "user", "ada", {"budget_percent": 80}, ["email"], [recipient])
    assert refused.value.field == "recipients"


@given(st.text(alphabet=st.sampled_from("aZ9.-_+!#%'@\n\r\x00 ()[]:\\é"), max_size=40))
def test_every_address_a_rule_accepts_is_one_the_smtp_channel_sends_to(value: str) -> None:
    if is_email(value):
        assert is_address(value)


def test_an_address_with_a_trailing_line_feed_never_reaches_the_to_header() -> None:
    assert not is_address("owner@example.com\n")
    message = build_message(Notification("n-1", "owner@example.com", "s", {}), "alerts@example.com",
                            datetime(2026, 3, 1, tzinfo=UTC))
    assert b"\n\r\n" not in bytes(message).split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize("name", ["a\r\nBcc: spy@evil.example", "a\u2028What happens next: nothing",
                                  "a\u2029b", "a\x00b", "a\x85b", "a\ud800b"])
def test_a_rule_name_is_one_line(name: str) -> None:
    with pytest.raises(AlertRuleError) as refused:
        rule_spec(name, "user", "ada", {"budget_percent": 80}, ["email"], ["@owner"])
    assert refused.value.field == "name"
