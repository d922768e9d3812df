"""E-mail over SMTP: the standard library's smtplib in a worker thread, bounded in time.

Failures are classified for the alerts worker's retries: a 5xx reply (a refused recipient,
sender or message) is permanent, a 4xx reply, a refused connection or a timeout transient, and
an address that is not one is permanent before any connection. The password is never logged
nor put in an error message.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from adapters.notify.email_message import build_message, is_address
from adapters.notify.once import OnceById
from domain.ports.notifier import Notification, NotificationFailed

SEND_THREADS = 4


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    # per socket operation (connect, each reply); the whole send is bounded by twice this
    timeout_s: float = 4.0


class SmtpNotifier:
    def __init__(self, config: SmtpConfig, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 trusted: ssl.SSLContext | None = None) -> None:
        """`trusted`: the certificates STARTTLS trusts (default the system's), for tests."""
        if not is_address(config.sender):
            raise ValueError(f"the sender {config.sender!r} is not an e-mail address (METERLINE_SMTP_FROM)")
        self.config = config
        self._now = now
        self._trusted = trusted
        self._once = OnceById()
        # its own threads: a hanging mail server must not take the default executor's few
        # threads, which the event store's calls in this process need
        self._threads = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="smtp")

    async def notify(self, notification: Notification) -> None:
        if not is_address(notification.recipient):
            raise NotificationFailed(f"{notification.recipient!r} is not an e-mail address", permanent=True)
        await self._once.run(notification.notification_id, lambda: self._send(notification))

    async def aclose(self) -> None:
        """Stops taking sends; a send under way ends by its socket timeout."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _send(self, notification: Notification) -> None:
        message = build_message(notification, self.config.sender, self._now())
        where = f"{self.config.host}:{self.config.port}"
        try:
            # the thread cannot be stopped; its socket timeout ends it soon after this gives up
            sending = asyncio.get_running_loop().run_in_executor(self._threads, self._deliver, message)
            await asyncio.wait_for(sending, 2 * self.config.timeout_s)
        except TimeoutError:
            raise NotificationFailed(f"the SMTP server {where} did not answer within "
                                     f"{2 * self.config.timeout_s:g} s") from None
        except smtplib.SMTPRecipientsRefused as refused:
            code, reply = next(iter(refused.recipients.values()))
            raise _failure(f"{where} refused the recipient {notification.recipient}", code, reply) from None
        except smtplib.SMTPResponseException as error:
            raise _failure(f"{where} refused the message", error.smtp_code, error.smtp_error) from None
        except smtplib.SMTPNotSupportedError as error:
            raise NotificationFailed(f"{where}: {error}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as error:
            raise NotificationFailed(f"the SMTP server {where} could not be reached: "
                                     f"{type(error).__name__}: {error}") from None

    def _deliver(self, message: EmailMessage) -> None:
        config = self.config
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=self._trusted or ssl.create_default_context())
            if config.user is not None:
                smtp.login(config.user, config.password or "")
            smtp.send_message(message)


def _failure(what: str, code: int, reply: bytes | str) -> NotificationFailed:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return NotificationFailed(f"{what}: {code} {' '.join(text.split())[:200]}", permanent=500 <= code < 600)
