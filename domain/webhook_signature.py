"""Webhook signatures: `X-Meterline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The MAC is HMAC-SHA256 keyed with the rule's secret over `f"{t}.{body}"`, the body's exact
bytes (Stripe and Svix sign the same way). A header may carry several `v1=` entries, one per
secret, so a secret can rotate without a moment when receivers refuse; a receiver accepts the
request if any entry matches any secret it holds. The timestamp bounds replay: a receiver
refuses one outside `tolerance_s` of its own clock, and drops an id it has already seen.

Receivers (docs/webhooks.md) and the webhook channel use this module.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime

HEADER = "X-Meterline-Signature"
SCHEME = "v1"
MAX_HEADER = 4096
_HEX_MAC = re.compile(r"^[0-9a-f]{64}$")
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")

Secret = str | bytes
Secrets = Secret | Sequence[Secret]


class SignatureInvalid(ValueError):
    """The request is not one the secret's holder sent now: refuse it (HTTP 400 or 401)."""


def mac(secret: Secret, timestamp: int, body: bytes | str) -> str:
    """The hex HMAC-SHA256 of `f"{timestamp}.{body}"` under `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    payload = f"{timestamp}.".encode() + (body.encode() if isinstance(body, str) else body)
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def sign(secret: Secrets, timestamp: int, body: bytes | str) -> str:
    """The header value: `t=<timestamp>,v1=<mac>`, one `v1=` per secret given."""
    return ",".join([f"t={int(timestamp)}", *(f"{SCHEME}={mac(s, timestamp, body)}" for s in _each(secret))])


def verify(secret: Secrets, header: str | None, body: bytes | str, now: datetime | float,
           tolerance_s: float = 300) -> None:
    """Returns if `header` signs `body` under one of the secrets within `tolerance_s` of `now`
    (a datetime or unix seconds); raises SignatureInvalid saying what is wrong otherwise."""
    timestamp, macs = parse(header)
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureInvalid(f"the signature's timestamp {timestamp} is more than {tolerance_s:g} s "
                               f"from now ({int(now_s)}): a replay, or a clock out of step")
    expected = [mac(s, timestamp, body) for s in _each(secret)]
    # every pair is compared, in constant time, so timing tells nothing about which was close
    matched = [hmac.compare_digest(e, m) for e in expected for m in macs]
    if not any(matched):
        raise SignatureInvalid("the signature does not match the body under this secret "
                               "(a wrong secret, or a body changed on the way)")


def parse(header: str | None) -> tuple[int, list[str]]:
    """(timestamp, v1 MACs) of a header; raises SignatureInvalid for a missing or garbled one."""
    if not header:
        raise SignatureInvalid(f"no {HEADER} header")
    if len(header) > MAX_HEADER:
        raise SignatureInvalid(f"the {HEADER} header is longer than {MAX_HEADER} characters")
    stamps, macs = [], []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureInvalid(f"the {HEADER} header is garbled: {item.strip()[:40]!r} is not key=value")
        if key == "t":
            stamps.append(value)
        elif key == SCHEME:
            macs.append(value.lower())
    if len(stamps) != 1 or not _UNIX_SECONDS.match(stamps[0]):
        raise SignatureInvalid(f"the {HEADER} header needs one t=<unix seconds>")
    macs = [m for m in macs if _HEX_MAC.match(m)]
    if not macs:
        raise SignatureInvalid(f"the {HEADER} header has no {SCHEME}=<64 hex digits> signature")
    return int(stamps[0]), macs


def _each(secrets: Secrets) -> list[Secret]:
    listed = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)
    if not listed or any(not s for s in listed):
        raise ValueError("a webhook signing secret may not be empty")
    return listed
