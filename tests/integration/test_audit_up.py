"""`meterline up` records the audit trail: the gateway child its access events, the ledger child
the domain events it follows from the stores; `meterline audit verify` and `export` then work on
the data directory, offline, with the same exit codes an auditor scripts against."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from adapters.clock import SystemClock
from adapters.eventstore.environments import sqlite_env
from domain.services.audit_trail import AuditTrail
from tests.support.deployment import write_config
from tests.support.embedded import ADMIN, up_env
from tests.support.gateway import free_port
from tests.support.processes import METERLINE, Processes

pytestmark = [pytest.mark.slow]
ADMIN_ACTOR = f"admin:{ADMIN[:6]}…"


def actions(data_dir: Path) -> list[tuple[str, str, str]]:
    trail = AuditTrail(SystemClock(), env=sqlite_env(data_dir))
    try:
        return [(r.entry.actor, r.entry.action, r.entry.target) for r in trail.records()]
    finally:
        trail.close()


def test_meterline_up_records_domain_and_access_events_and_the_cli_verifies_and_exports_them(
        tmp_path: Path) -> None:
    env = up_env(write_config(tmp_path / "m.toml", "http://127.0.0.1:9/v1"))
    with Processes(tmp_path, env) as processes:
        up = processes.spawn("up", "up", port=free_port())
        up.wait_healthy(90)
        with up.client(ADMIN) as admin:
            admin.post("/api/admin/users", json={"user_id": "u1"}).raise_for_status()
            key = admin.post("/api/keys", json={"name": "k", "models": ["sim"], "user_id": "u1"}).json()
            admin.delete(f"/api/keys/{key['id']}").raise_for_status()
        bad = httpx.post(f"{up.url}/v1/chat/completions", headers={"authorization": f"Bearer {key['key']}"},
                         json={"model": "sim", "messages": []})
        assert bad.status_code == 401
        deadline = time.monotonic() + 30
        while (ADMIN_ACTOR, "KeyRevoked", f"key:{key['id']}") not in actions(up.data_dir):
            assert time.monotonic() < deadline, actions(up.data_dir)
            time.sleep(0.1)
        up.terminate()  # the gateway appends the minute's failed authentication as it stops
        assert "Traceback" not in up.log_text(), up.log_tail()
    recorded = actions(up.data_dir)
    assert (ADMIN_ACTOR, "AdminActionPerformed", f"key:{key['id']}") in recorded
    assert (ADMIN_ACTOR, "UserRegistered", "user:u1") in recorded  # who asked, not `system`
    assert ("system", "PriceSet", "model:sim") in recorded  # the configuration's
    assert ("anonymous", "AuthFailed", "") in recorded
    cli = [str(METERLINE), "audit"]
    cli_env = {**env, "METERLINE_DATA_DIR": str(up.data_dir)}
    verified = subprocess.run([*cli, "verify"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert f"ok: {len(recorded)} entries verified" in verified.stdout
    exported = subprocess.run([*cli, "export", "-o", str(tmp_path / "bundle")], env=cli_env,
                              capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    offline = subprocess.run([*cli, "verify", "--bundle", str(tmp_path / "bundle")], env=cli_env,
                             capture_output=True, text=True, timeout=60)
    assert offline.returncode == 0, offline.stderr + offline.stdout
    assert key["key"] not in (tmp_path / "bundle" / "entries.jsonl").read_text()
