"""API keys and user tokens: random secrets, stored only as HMAC-SHA256 with a server secret."""

from __future__ import annotations

import hmac
import secrets

KEY_PREFIX = "sk-ml-"
TOKEN_PREFIX = "mlu-"
SECRET_BYTES = 32


def new_secret(prefix: str = KEY_PREFIX) -> str:
    """A fresh secret with 32 random bytes (256 bits) after its human-readable prefix."""
    return prefix + secrets.token_urlsafe(SECRET_BYTES)


def fingerprint(secret: str, server_secret: bytes) -> str:
    """The HMAC-SHA256 of a secret under the server secret: what the stores keep."""
    return hmac.digest(server_secret, secret.encode(), "sha256").hex()  # one-shot C path


def display_prefix(secret: str) -> str:
    """The first characters of a secret, enough to recognise it in a list, too few to use it."""
    return secret[: len(KEY_PREFIX) + 4]
