"""Where a webhook may be sent: an http(s) URL without credentials whose host resolves only to
public addresses (unless private ones are allowed, for tests and development).

The check is on the resolved addresses, and the request then goes to the address that was
checked (the host name kept for `Host` and TLS), so a name that resolves to a public address
when checked and to 169.254.169.254 a moment later (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

from domain.alerts.webhook_host import is_public
from domain.ports.notifier import NotificationFailed

MAX_URL = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_HOST = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")  # IDNs arrive as xn-- from httpx


@dataclass(frozen=True)
class Target:
    url: httpx.URL  # where to connect: the checked address in place of the host name
    host: str  # the host name, for TLS (SNI, certificate)
    netloc: str  # host[:port] as the URL gave it, for the Host header


async def resolve_target(url: str, allow_private: bool) -> Target:
    """The URL's checked target; raises a permanent NotificationFailed for a URL refused."""
    return await _checked(url, allow_private, "set METERLINE_WEBHOOK_ALLOW_PRIVATE=1 to allow private "
                                              "addresses in development")


async def resolve_public_target(url: str, allow_private: bool = False) -> Target:
    """`resolve_target` for users' own rules: public addresses only, whatever the deployment allows."""
    return await _checked(url, False, "a user's rule sends only to public addresses")


async def _checked(url: str, allow_private: bool, hint: str) -> Target:
    parsed = _parse(url)
    host = parsed.host
    if allow_private:
        return Target(parsed, host, parsed.netloc.decode())
    addresses = await _addresses(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    for address in addresses:
        if not is_public(address):
            raise NotificationFailed(f"webhook URL refused: {host} resolves to {address}, which is not a "
                                     f"public address ({hint})", permanent=True)
    return Target(parsed.copy_with(host=str(addresses[0])), host, parsed.netloc.decode())


def _parse(url: str) -> httpx.URL:
    if len(url) > MAX_URL:
        raise NotificationFailed(f"webhook URL refused: longer than {MAX_URL} characters", permanent=True)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise NotificationFailed(f"webhook URL refused: not a URL ({error})", permanent=True) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise NotificationFailed("webhook URL refused: only http:// and https:// URLs with a host are "
                                 "sent to", permanent=True)
    if not _HOST.match(parsed.host) and not _is_ip(parsed.host):
        raise NotificationFailed(f"webhook URL refused: {parsed.host!r} is not a host name", permanent=True)
    if parsed.userinfo:
        # credentials in a URL end up in logs and proxies; a webhook authenticates by its signature
        raise NotificationFailed("webhook URL refused: it carries a user name or password",
                                 permanent=True)
    return parsed


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _addresses(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        # a name that does not resolve may resolve later (DNS trouble): transient
        raise NotificationFailed(f"webhook host {host} does not resolve: {error}") from None
    # scope ids (fe80::1%eth0) are dropped: such addresses are link-local and refused anyway
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
