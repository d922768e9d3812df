"""A rule's webhook signing secret, derived and never stored, and the signature receivers check.

secret = "whsec_" + urlsafe-base64(HMAC-SHA256(server secret, "alert-webhook:<rule id>:<version>"))
signature header = "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" (Stripe/Svix style).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

PREFIX = "whsec_"


def webhook_secret(server_secret: bytes, rule_id: UUID | str, secret_version: int) -> str:
    message = f"alert-webhook:{rule_id}:{secret_version}".encode()
    digest = hmac.new(server_secret, message, hashlib.sha256).digest()
    return PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: the HMAC matches and the timestamp lies within the replay window."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature_header(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
