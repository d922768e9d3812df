"""The channels a deployment's settings give the alerts worker (infra/notifiers.py)."""

from __future__ import annotations

import logging

import pytest

from adapters.notify.log_only import LogOnlyNotifier
from adapters.notify.smtp import SmtpNotifier
from adapters.notify.webhook import WebhookNotifier
from domain.ports.notifier import Notification
from infra.config.env_settings import load_settings
from infra.config.errors import ConfigError
from infra.notifiers import build_channels
from tests.support.config import clean_environment as clean_environment  # autouse fixture
from tests.support.smtp_server import smtp_server

PASSWORD = "smtp-pass-from-env-3Kq9"


async def test_without_an_smtp_host_e_mail_is_only_logged_and_the_start_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    channels = build_channels(load_settings())
    assert "METERLINE_SMTP_HOST is not set" in caplog.text
    assert isinstance(channels["email"], LogOnlyNotifier)
    await channels["email"].notify(Notification("l-1", "owner@example.com", "Budget at 80 %",
                                                {"spent_usd": "8123.45"}))
    assert "owner@example.com" in caplog.text and "Budget at 80 %" in caplog.text
    assert "8123.45" not in caplog.text  # the body is not logged
    await channels["webhook"].aclose()


async def test_with_an_smtp_host_e_mail_goes_to_that_server(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server() as server:
        for name, value in {"HOST": server.host, "PORT": str(server.port), "FROM": "alerts@example.com",
                            "STARTTLS": "0", "PASSWORD": PASSWORD}.items():
            monkeypatch.setenv(f"METERLINE_SMTP_{name}", value)
        settings = load_settings()
        channels = build_channels(settings)
        assert isinstance(channels["email"], SmtpNotifier)
        await channels["email"].notify(Notification("e-1", "owner@example.com", "hello"))
        assert len(server.messages_to("owner@example.com")) == 1
    assert PASSWORD not in repr(settings) and PASSWORD not in caplog.text
    await channels["webhook"].aclose()


def test_an_smtp_host_without_a_sender_address_is_a_config_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERLINE_SMTP_HOST", "mail.example.com")
    with pytest.raises(ConfigError, match="METERLINE_SMTP_FROM"):
        build_channels(load_settings())


async def test_webhooks_refuse_private_targets_unless_the_setting_allows_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    strict = build_channels(load_settings())["webhook"]
    monkeypatch.setenv("METERLINE_WEBHOOK_ALLOW_PRIVATE", "1")
    lenient = build_channels(load_settings())["webhook"]
    assert isinstance(strict, WebhookNotifier) and isinstance(lenient, WebhookNotifier)
    assert (strict.allow_private, lenient.allow_private) == (False, True)
    await strict.aclose()
    await lenient.aclose()
