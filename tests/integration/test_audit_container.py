"""The composition root opens the audit trail with the deployment's one signing key, and refuses
another key once the trail has checkpoints: that process could not sign, and its verify would
call an intact trail broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.clock import SystemClock
from domain.audit import AuditEntry
from infra.config.env_settings import Settings
from infra.config.errors import ConfigError
from infra.container import open_audit


def settings(data_dir: Path, key_file: Path) -> Settings:
    return Settings(data_dir=data_dir, dev=True, admin_token="a" * 32, key_secret="k" * 40,
                    audit_key_file=key_file)


def test_a_process_with_another_signing_key_is_refused_once_the_trail_has_a_checkpoint(tmp_path) -> None:
    clock = SystemClock()
    trail = open_audit(settings(tmp_path, tmp_path / "keys" / "shared.pem"), clock, signer=True)
    try:
        trail.append([AuditEntry(time=clock.now(), actor="admin", action="TeamCreated", target="team:t")])
        stranger = open_audit(settings(tmp_path, tmp_path / "other.pem"), clock, signer=True)  # none yet
        stranger.close()
        assert trail.checkpoint() is not None
    finally:
        trail.close()
    with pytest.raises(ConfigError, match="METERLINE_AUDIT_KEY_FILE"):
        open_audit(settings(tmp_path, tmp_path / "other.pem"), clock, signer=True)
    with pytest.raises(ConfigError, match="METERLINE_AUDIT_KEY_FILE"):  # its published half, too
        open_audit(settings(tmp_path, tmp_path / "other.pem"), clock)
    again = open_audit(settings(tmp_path, tmp_path / "keys" / "shared.pem"), clock, signer=True)
    try:
        assert again.verify(again.signing_key.public_key()).ok
    finally:
        again.close()
