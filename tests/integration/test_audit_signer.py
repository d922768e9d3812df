"""Only the scheduler's process holds the audit signing key: every other process (the gateway
among them) appends unsigned and knows only the public half the signer publishes beside the key."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from adapters.clock import SystemClock
from domain.audit import AuditEntry, BreakKind, key_id
from infra.audit_keys import public_key_path
from infra.config.env_settings import Settings
from infra.container import open_audit
from tests.support.audit_store import SQLiteRows
from tests.support.gateway import ADMIN_TOKEN, openai_error, running_gateway, sim_config


def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, dev=True, admin_token="a" * 32, key_secret="k" * 40)


def test_a_gateway_without_the_scheduler_holds_no_private_key_and_serves_the_published_public_key(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_gateway(data_dir, sim_config("http://127.0.0.1:9/v1"), roles=frozenset({"gateway"})) as gw:
        trail = gw.system.audit
        assert trail.signing_key is None and trail.public_key is None
        assert not gw.system.settings.audit_key_path.exists()  # the gateway did not even make one
        with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
            unpublished = openai_error(admin.get("/api/admin/audit/public-key"), 503)
            assert unpublished["code"] == "audit_key_unavailable"
            signer = open_audit(settings(data_dir), SystemClock(), signer=True)  # the scheduler starts
            try:
                assert public_key_path(gw.system.settings.audit_key_path).stat().st_mode & 0o777 == 0o644
                served = load_pem_public_key(admin.get("/api/admin/audit/public-key").content)
                assert key_id(served) == key_id(signer.signing_key.public_key())
                trail.append([AuditEntry(time=SystemClock().now(), actor="admin", action="TeamCreated")])
                assert trail.checkpoints() == []  # appended unsigned
                assert signer.checkpoint() is not None  # the scheduler's tick signs it
                verified = admin.get("/api/admin/audit/verify", params={"full": "true"}).json()
                assert verified["ok"] and verified["last_checkpoint"]["key_id"] == key_id(served)
            finally:
                signer.close()


def test_verify_with_the_published_key_still_catches_a_tail_cut_after_a_checkpoint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    signer = open_audit(settings(data_dir), SystemClock(), signer=True)
    writer = open_audit(settings(data_dir), SystemClock())  # a gateway's: the public key alone
    try:
        assert writer.signing_key is None
        writer.append([AuditEntry(time=SystemClock().now(), actor="admin", action="KeyRevoked",
                                  target=f"key:{i}") for i in range(12)])
        assert signer.checkpoint().seq == 12
        writer.append([AuditEntry(time=SystemClock().now(), actor="system", action="BudgetSet")])
        SQLiteRows(data_dir / "audit.sqlite").delete_from(10)  # the tail, cut through the checkpoint
        report = writer.verify(writer.public_key)
        assert report.problem is not None and report.problem.kind == BreakKind.TRUNCATED, report.summary()
    finally:
        writer.close()
        signer.close()
