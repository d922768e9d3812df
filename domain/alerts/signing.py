"""A rule's webhook signing secret: derived from the server secret, never stored.

secret = "whsec_" + urlsafe-base64(HMAC-SHA256(server secret, "alert-webhook:<rule id>:<version>"))
Rotating it is a new version (`AlertRule.rotate_secret`). The signature itself is
`domain/webhook_signature.py`'s.
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
