"""A real SMTP server on loopback (aiosmtpd, in its own thread) that keeps what it receives,
refuses (550) or defers (450) some recipients, and can require a login; and a server that never
answers."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from tests.support.gateway import free_port


@dataclass
class Received:
    recipients: list[str]
    message: EmailMessage


@dataclass
class KeepingHandler:
    refused: frozenset[str] = frozenset()
    deferred: frozenset[str] = frozenset()
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope: Envelope, address: str, rcpt_options) -> str:
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        if address in self.deferred:
            return "450 4.2.1 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope: Envelope) -> str:
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        self.received.append(Received(list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: KeepingHandler

    def messages_to(self, recipient: str) -> list[EmailMessage]:
        return [r.message for r in self.handler.received if recipient in r.recipients]


@contextmanager
def smtp_server(refused: frozenset[str] = frozenset(), deferred: frozenset[str] = frozenset(),
                login: tuple[str, str] | None = None,
                tls: ssl.SSLContext | None = None) -> Iterator[SmtpServer]:
    """A server on 127.0.0.1 refusing (550) or deferring (450) some recipients; with `login`, it
    accepts only that user and password; with `tls`, it requires STARTTLS before anything else
    (and the login only over TLS)."""
    handler = KeepingHandler(refused, deferred)
    auth: dict = {"tls_context": tls, "require_starttls": True} if tls else {}
    if login is not None:
        def authenticate(server, session, envelope, mechanism, data) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == login
            return AuthResult(success=ok, handled=False)
        auth |= {"authenticator": authenticate, "auth_require_tls": tls is not None, "auth_required": True}
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **auth)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]
