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
    parsed = _parse(url)
    host = parsed.host
    if allow_private:
        return Target(parsed, host, parsed.netloc.decode())
    addresses = await _addresses(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    for address in addresses:
        if not is_public(address):
            raise NotificationFailed(f"webhook URL refused: {host} resolves to {address}, which is not a "
                                     "public address (set METERLINE_WEBHOOK_ALLOW_PRIVATE=1 to allow "
                                     "private addresses in development)", permanent=True)
    return Target(parsed.copy_with(host=str(addresses[0])), host, parsed.netloc.decode())


def is_public(address: Address) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared, reserved or multicast,
    nor an IPv6 address that carries such an IPv4 one (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = [address.sixtofour] if address.sixtofour is not None else []
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(not is_public(inner) for inner in embedded) or any(address in n for n in _NOT_PUBLIC_V6):
            return False
    return address.is_global and not address.is_multicast


# the standard library calls these global; each can lead to an address that is not
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NOT_PUBLIC_V6 = (ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated): ::127.0.0.1
                  ipaddress.IPv6Network("64:ff9b:1::/48"))  # NAT64 for local use


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
