"""The audit signing key file: made once with owner-only permissions, refused when others can read it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.audit_keys import load_or_create_signing_key, load_signing_key, public_key_pem


def test_the_signing_key_is_made_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "new" / "audit.pem"
    first = public_key_pem(load_or_create_signing_key(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert public_key_pem(load_or_create_signing_key(path)) == first


def test_verification_never_makes_a_key_where_none_is(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no audit signing key"):
        load_signing_key(tmp_path / "absent.pem")
    assert not (tmp_path / "absent.pem").exists()


def test_a_file_that_is_not_an_ed25519_key_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="METERLINE_AUDIT_KEY_FILE"):
        load_or_create_signing_key(path)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    load_or_create_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        load_or_create_signing_key(path)
