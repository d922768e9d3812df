"""Webhook signatures: a signed body verifies; a changed body, another secret, a stale or future
timestamp and a missing or garbled header each fail with a reason; secrets can rotate."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.webhook_signature import SignatureInvalid, mac, sign, verify

SECRET = "whsec-unit-5e4d3c2b1a"
T = 1_780_000_000
secrets = st.text(min_size=1, max_size=64)
bodies = st.binary(max_size=2048)
stamps = st.integers(min_value=0, max_value=10**11)


@given(secrets, stamps, bodies)
def test_a_signed_body_verifies_under_its_secret_at_its_time(secret: str, t: int, body: bytes) -> None:
    verify(secret, sign(secret, t, body), body, now=t)


@given(secrets, stamps, bodies, bodies)
def test_a_changed_body_does_not_verify(secret: str, t: int, body: bytes, other: bytes) -> None:
    if other != body:
        with pytest.raises(SignatureInvalid, match="does not match"):
            verify(secret, sign(secret, t, body), other, now=t)


@given(secrets, secrets, stamps, bodies)
def test_another_secret_does_not_verify(secret: str, other: str, t: int, body: bytes) -> None:
    if other != secret:
        with pytest.raises(SignatureInvalid, match="does not match"):
            verify(other, sign(secret, t, body), body, now=t)


@given(stamps, st.integers(min_value=301, max_value=10**9), st.booleans())
def test_a_timestamp_outside_the_window_does_not_verify(t: int, off: int, future: bool) -> None:
    header = sign(SECRET, t, b"{}")
    with pytest.raises(SignatureInvalid, match="replay"):
        verify(SECRET, header, b"{}", now=t - off if future else t + off)


def test_a_timestamp_inside_the_window_verifies_by_datetime_too() -> None:
    header = sign(SECRET, T, "{}")
    verify(SECRET, header, b"{}", now=datetime.fromtimestamp(T + 299, UTC))
    verify(SECRET, header, b"{}", now=T - 299)


def test_a_changed_timestamp_does_not_verify() -> None:
    header = sign(SECRET, T, b"{}").replace(f"t={T}", f"t={T + 1}")
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify(SECRET, header, b"{}", now=T)


def test_the_header_is_t_then_a_hex_hmac_of_t_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + body, hashlib.sha256).hexdigest()
    assert mac(SECRET, T, body) == expected
    assert sign(SECRET, T, body) == f"t={T},v1={expected}"


def test_a_header_signed_with_the_old_and_new_secret_verifies_under_either() -> None:
    header = sign(["old-secret", "new-secret"], T, b"{}")
    assert header.count("v1=") == 2
    verify("old-secret", header, b"{}", now=T)
    verify("new-secret", header, b"{}", now=T)


def test_a_receiver_holding_two_secrets_accepts_either_while_rotating() -> None:
    verify(["new-secret", "old-secret"], sign("old-secret", T, b"{}"), b"{}", now=T)


def test_unknown_schemes_are_ignored_beside_a_good_v1() -> None:
    header = f"v0=abc,{sign(SECRET, T, b'{}')},v2=ffff"
    verify(SECRET, header, b"{}", now=T)


@pytest.mark.parametrize(("header", "why"), [
    (None, "no X-Meterline-Signature"), ("", "no X-Meterline-Signature"),
    ("garbage", "not key=value"), (f"v1={'a' * 64}", "one t="), (f"t=abc,v1={'a' * 64}", "one t="),
    (f"t=1,t=2,v1={'a' * 64}", "one t="), (f"t=-5,v1={'a' * 64}", "one t="),
    ("t=١٢٣,v1=" + "a" * 64, "one t="), (f"t={T}", "no v1="), (f"t={T},v1=xyz", "no v1="),
    (f"t={T},v1={'a' * 63}", "no v1="), ("t=1," + "x=y," * 2000, "longer than")])
def test_a_missing_or_garbled_header_fails_saying_so(header: str | None, why: str) -> None:
    with pytest.raises(SignatureInvalid, match=why):
        verify(SECRET, header, b"{}", now=T)


def test_an_empty_secret_is_refused_for_signing_and_verifying() -> None:
    with pytest.raises(ValueError, match="may not be empty"):
        sign("", T, b"{}")
    with pytest.raises(ValueError, match="may not be empty"):
        verify([], sign(SECRET, T, b"{}"), b"{}", now=T)
