"""The alert channels a deployment delivers through, chosen from the settings.

`build_channels(settings)` gives "email" (SMTP when METERLINE_SMTP_HOST is set, otherwise a
channel that only logs recipient and subject, and says so once at start) and "webhook" (signed
CloudEvents; private targets only with METERLINE_WEBHOOK_ALLOW_PRIVATE=1). The alerts worker
looks a rule's channel up by name; in-app notices are its own.
"""

from __future__ import annotations

import logging

from adapters.notify.email_message import is_address
from adapters.notify.log_only import LogOnlyNotifier
from adapters.notify.smtp import SmtpConfig, SmtpNotifier
from adapters.notify.webhook import WebhookNotifier
from adapters.notify.webhook_target import resolve_public_target
from domain.ports.notifier import Notifier
from infra.config.env_settings import Settings
from infra.config.errors import ConfigError
from infra.workers.alerts_worker import USERS_WEBHOOK

log = logging.getLogger(__name__)


def build_channels(settings: Settings) -> dict[str, Notifier]:
    """{"email": …, "webhook": …, "webhook_for_users": …}; a webhook channel holds an HTTP client
    (`await aclose()` it). Users' own rules send through a webhook channel that never reaches a
    private address, even where METERLINE_WEBHOOK_ALLOW_PRIVATE lets admins' rules do so."""
    timeout_s = settings.webhook_timeout_s
    webhook = WebhookNotifier(allow_private=settings.webhook_allow_private, timeout_s=timeout_s)
    users = WebhookNotifier(timeout_s=timeout_s, resolve=resolve_public_target)
    return {"email": _email(settings), "webhook": webhook, USERS_WEBHOOK: users}


def _email(settings: Settings) -> Notifier:
    if not settings.smtp_host:
        log.warning("alert e-mails are not sent: METERLINE_SMTP_HOST is not set, so they are only "
                    "logged (recipient and subject)")
        return LogOnlyNotifier("email")
    if not settings.smtp_from or not is_address(settings.smtp_from):
        raise ConfigError("", ["METERLINE_SMTP_FROM: set it to the address alert e-mails come from "
                               "(e.g. METERLINE_SMTP_FROM=alerts@example.com) when "
                               "METERLINE_SMTP_HOST is set"])
    if settings.smtp_user and not settings.smtp_starttls:
        log.warning("METERLINE_SMTP_USER is set without METERLINE_SMTP_STARTTLS: the SMTP password "
                    "crosses the network in the clear")
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpNotifier(SmtpConfig(
        host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from, user=settings.smtp_user,
        password=password, starttls=settings.smtp_starttls, timeout_s=settings.smtp_timeout_s))
