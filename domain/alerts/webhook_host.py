"""Which hosts a webhook may name: the address rules the alerts API checks when a rule is set and
the webhook channel checks again on the resolved address when it sends, in one place.

A host that is an address in disguise is read as the resolver would read it: `127.1`,
`0x7f.0.0.1`, `0177.0.0.1` and `2130706433` are all 127.0.0.1 to `getaddrinfo` (inet_aton's
forms), and full-width or circled digits become ASCII ones under the NFKC mapping IDNA applies.
Such a host is refused unless it is a plain dotted quad that is public, so a rule cannot be
accepted that the channel would then refuse (or, with a looser resolver, send to).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan")
# a last label that is a number (decimal, octal with a leading 0, hex with 0x) makes the whole
# host an IPv4 address to a resolver and to the WHATWG URL standard: no top-level domain is one
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
# the standard library calls these global; each can lead to an address that is not
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NOT_PUBLIC_V6 = (ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated): ::127.0.0.1
                  ipaddress.IPv6Network("64:ff9b:1::/48"))  # NAT64 for local use


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


def normal_host(host: str) -> str:
    """The host as a resolver sees it: NFKC-mapped, lower case, without a trailing dot or brackets."""
    return unicodedata.normalize("NFKC", host).strip("[]").rstrip(".").lower()


def host_refusal(host: str) -> str | None:
    """Why a webhook may not name this host (a sentence), or None if it may. A name is not resolved
    here: the channel resolves it when it sends, and refuses a private address then."""
    name = normal_host(host)
    if not name:
        return "it has no host"
    if "%" in name:
        return "an address with a zone id (fe80::1%eth0) is link-local"
    address = as_address(name)
    if address is not None:
        return None if is_public(address) else f"{name} is not a public address"
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        return (f"{host!r} is an IPv4 address in a short, octal or hex form; write a public address "
                "as four decimal numbers (a.b.c.d) or use its host name")
    if "." not in name or name.endswith(LOCAL_SUFFIXES) or name in ("localhost", "localhost.localdomain"):
        return f"{name} is a local name (a single label or a local-only suffix)"
    return None


def as_address(name: str) -> Address | None:
    """The IP address `name` is written as, or None for a host name."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None
