"""E-mail over SMTP against real servers on loopback: how failures are classified, how long a
send may take, what the message carries, and that the password stays out of logs and errors."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from adapters.notify.email_message import ID_HEADER, read_notification
from adapters.notify.smtp import SmtpConfig, SmtpNotifier
from domain.ports.notifier import Notification, NotificationFailed
from tests.support.gateway import free_port
from tests.support.smtp_server import silent_server, smtp_server
from tests.support.tls import certificate_for

SENDER = "alerts@meterline.example"
PASSWORD = "s3cret-smtp-pass-7Qx"


def notifier(port: int, **config) -> SmtpNotifier:
    return SmtpNotifier(SmtpConfig("127.0.0.1", port, SENDER, **config))


async def test_a_server_that_is_down_is_a_transient_failure() -> None:
    with pytest.raises(NotificationFailed) as failed:
        await notifier(free_port()).notify(Notification("d-1", "owner@example.com", "hello"))
    assert not failed.value.permanent
    assert "could not be reached" in str(failed.value)


async def test_a_recipient_refused_with_550_is_a_permanent_failure_naming_the_reply() -> None:
    refusing = smtp_server(refused=frozenset({"gone@example.com"}))
    with refusing as server, pytest.raises(NotificationFailed) as failed:
        await notifier(server.port).notify(Notification("r-1", "gone@example.com", "hello"))
    assert failed.value.permanent
    assert "550" in str(failed.value) and "gone@example.com" in str(failed.value)


async def test_a_recipient_deferred_with_450_is_a_transient_failure() -> None:
    deferring = smtp_server(deferred=frozenset({"busy@example.com"}))
    with deferring as server, pytest.raises(NotificationFailed) as failed:
        await notifier(server.port).notify(Notification("r-2", "busy@example.com", "hello"))
    assert not failed.value.permanent and "450" in str(failed.value)


@pytest.mark.parametrize("recipient", [
    "", "owner", "owner@localhost", "owner@@example.com", "Owner <owner@example.com>",
    "owner@example.com\r\nBcc: spy@evil.example", "owner@example.com, spy@evil.example",
    "own er@example.com", "owner@exa_mple.com", "a" * 65 + "@example.com"])
async def test_a_recipient_that_is_not_an_address_fails_permanently_before_any_connection(
        recipient: str) -> None:
    # nothing listens on this port: had the notifier connected, the failure would be transient
    with pytest.raises(NotificationFailed) as failed:
        await notifier(free_port()).notify(Notification("a-1", recipient, "hello"))
    assert failed.value.permanent and "not an e-mail address" in str(failed.value)


async def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(NotificationFailed) as failed:
            await notifier(port, timeout_s=0.5).notify(Notification("s-1", "owner@example.com", "hello"))
    assert time.monotonic() - started < 2.0
    assert not failed.value.permanent


async def test_starttls_asked_of_a_server_without_it_is_a_permanent_failure() -> None:
    with smtp_server() as server, pytest.raises(NotificationFailed) as failed:
        await notifier(server.port, starttls=True).notify(Notification("t-1", "owner@example.com", "hi"))
    assert failed.value.permanent and "STARTTLS" in str(failed.value)


async def test_the_message_is_mime_with_text_and_json_parts_and_headers_to_deduplicate_by() -> None:
    sent = Notification("alert-42", "owner@example.com", "Budget at 80 %",
                        {"type": "meterline.alert.triggered", "text": "You have spent 80 %.",
                         "data": {"percent": 80}})
    with smtp_server() as server:
        await notifier(server.port).notify(sent)
        await notifier(server.port).notify(sent)  # a second process, as after a restart
        first, second = server.messages_to("owner@example.com")
    assert first["Message-ID"] == second["Message-ID"] == "<meterline.alert-42@meterline.example>"
    assert first[ID_HEADER] == "alert-42"
    assert (first["From"], first["To"]) == (SENDER, "owner@example.com")
    assert first["Date"].datetime.tzinfo is not None
    assert first.get_content_type() == "multipart/mixed"
    parts = [part.get_content_type() for part in first.iter_parts()]
    assert parts == ["text/plain", "application/json"]
    assert first.get_body(("plain",)).get_content().strip() == "You have spent 80 %."
    assert read_notification(first) == sent


async def test_a_subject_with_a_line_break_cannot_add_a_header() -> None:
    with smtp_server() as server:
        await notifier(server.port).notify(
            Notification("h-1", "owner@example.com", "Budget\r\nBcc: spy@evil.example", {}))
        [message] = server.messages_to("owner@example.com")
    assert message["Bcc"] is None
    assert message["Subject"] == "Budget Bcc: spy@evil.example"
    assert [r.recipients for r in server.handler.received] == [["owner@example.com"]]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_the_password_appears_in_no_log_and_no_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(login=("alerts", PASSWORD)) as server:
        right = notifier(server.port, user="alerts", password=PASSWORD)
        await right.notify(Notification("p-1", "owner@example.com", "logged in"))
        wrong = notifier(server.port, user="alerts", password=PASSWORD + "-old")
        with pytest.raises(NotificationFailed) as failed:
            await wrong.notify(Notification("p-2", "owner@example.com", "refused"))
        assert len(server.messages_to("owner@example.com")) == 1
    assert failed.value.permanent and "535" in str(failed.value)
    assert PASSWORD not in str(failed.value) and PASSWORD not in repr(failed.value)
    assert PASSWORD not in repr(right.config) and PASSWORD not in repr(right)
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]  # the test server's own log
    assert all(PASSWORD not in r.getMessage() for r in ours)


async def test_a_body_that_is_not_json_fails_permanently_before_any_connection() -> None:
    with pytest.raises(NotificationFailed) as failed:
        await notifier(free_port()).notify(Notification("j-1", "owner@example.com", "x", {"n": float("nan")}))
    assert failed.value.permanent and "not JSON" in str(failed.value)


async def test_a_hanging_server_leaves_the_default_thread_pool_free() -> None:
    # the event store's calls in this process go through asyncio.to_thread
    with silent_server() as port:
        channel = notifier(port, timeout_s=3.0)
        hanging = [asyncio.ensure_future(channel.notify(Notification(f"h-{n}", "owner@example.com", "x")))
                   for n in range(40)]  # more than the default pool ever has (32)
        await asyncio.sleep(0.1)  # the sends are under way, each holding a thread
        await asyncio.to_thread(lambda: None)  # had they taken the default pool, this would wait
        assert not any(task.done() for task in hanging)  # ... for them to time out
        results = await asyncio.gather(*hanging, return_exceptions=True)
    assert all(isinstance(r, NotificationFailed) and not r.permanent for r in results)


async def test_starttls_protects_the_login_and_verifies_the_servers_name(tmp_path: Path) -> None:
    server_tls, trusting = certificate_for("localhost", tmp_path)
    with smtp_server(login=("alerts", PASSWORD), tls=server_tls) as server:
        config = SmtpConfig("localhost", server.port, SENDER, "alerts", PASSWORD, starttls=True)
        await SmtpNotifier(config, trusted=trusting).notify(Notification("tls-1", "owner@example.com", "hi"))
        assert len(server.messages_to("owner@example.com")) == 1
        _, stranger = certificate_for("mail.elsewhere.example", tmp_path)
        with pytest.raises(NotificationFailed) as failed:
            await SmtpNotifier(config, trusted=stranger).notify(
                Notification("tls-2", "owner@example.com", "x"))
    assert not failed.value.permanent and "certificate" in str(failed.value).lower()
