"""Invariants 5 and 6: no key secret, user token, admin token, prompt or completion is stored anywhere,
the audit trail and an exported audit bundle included."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.clock import SystemClock
from adapters.eventstore.environments import sqlite_env
from domain.services.audit_trail import AuditTrail
from infra.audit_bundle import export, verify_bundle
from infra.audit_keys import load_signing_key
from infra.runner import ALL_ROLES
from testkit.simulator.server import Simulator
from tests.support.gateway import ADMIN_TOKEN, running_gateway, sim_config


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


def chat(url: str, secret: str, content: str, **body) -> httpx.Response:
    return httpx.post(url + "/chat/completions", headers={"authorization": f"Bearer {secret}"},
                      json={"model": "sim", "messages": [{"role": "user", "content": content}], **body})


def files_containing(root: Path, needles: dict[str, bytes]) -> dict[str, list[str]]:
    """Which of the needles occur in which file under root (every byte, any format)."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for name, needle in needles.items():
            if needle in data:
                found.setdefault(name, []).append(str(path.relative_to(root)))
    return found


def test_no_secret_and_no_prompt_or_completion_text_is_stored_anywhere(sim, tmp_path):
    marker = f"PROMPT-MARKER-{uuid.uuid4().hex}"
    data_dir = tmp_path / "data"
    with running_gateway(data_dir, sim_config(sim.base_url), roles=ALL_ROLES) as gw:
        token = gw.setup_user("frank")
        key = gw.issue_key("frank")
        with gw.client(ADMIN_TOKEN) as admin:
            rotated = admin.post(f"/api/keys/{key['id']}/rotate", json={"grace_seconds": 60}).json()
        answered = chat(gw.v1, key["key"], marker, max_tokens=8)
        assert answered.status_code == 200
        completion = answered.json()["choices"][0]["message"]["content"]
        with httpx.stream("POST", gw.v1 + "/chat/completions",
                          headers={"authorization": f"Bearer {rotated['key']}"},
                          json={"model": "sim", "stream": True, "max_tokens": 8,
                                "messages": [{"role": "system", "content": marker},
                                             {"role": "user", "content": [{"type": "text", "text": marker}]}]}
                          ) as streamed:
            assert streamed.status_code == 200
            assert '"content":" ipsum"' in "".join(streamed.iter_text())
        auth = {"authorization": f"Bearer {rotated['key']}"}
        assert httpx.post(gw.v1 + "/completions", headers=auth,
                          json={"model": "sim", "prompt": marker, "max_tokens": 8}).status_code == 200
        assert httpx.post(gw.v1 + "/embeddings", headers=auth,
                          json={"model": "sim-embed", "input": [marker, marker]}).status_code == 200
        facts = gw.wait_metered(key["id"], 4)
        assert len(facts) == 4
        # secrets also reach the audit trail's paths: a revoked key and a user token presented again
        with gw.client(ADMIN_TOKEN) as admin:
            assert admin.delete(f"/api/keys/{key['id']}").status_code == 200
        assert chat(gw.v1, key["key"], "after revocation").status_code == 401
        with gw.client(token) as frank:
            assert frank.get("/api/admin/audit").status_code == 403
            second = frank.post("/api/keys", json={"name": "own", "models": ["sim"]}).json()["key"]
        wait_for_audit(gw, f"key:{key['id']}", "KeyRevoked")
        hmacs = {f"{name} hmac": gw.system.ctx.hmac(secret).encode() for name, secret in (
            ("key", key["key"]), ("rotated", rotated["key"]), ("token", token), ("own key", second))}
    assert len(completion) > 30  # the simulator's answer, which must not be stored either
    needles = {"prompt": marker.encode(), "completion": completion.encode(),
               "key secret": key["key"].encode(), "rotated secret": rotated["key"].encode(),
               "user token": token.encode(), "admin token": ADMIN_TOKEN.encode(),
               "user's own key": second.encode()}
    bundle = export_audit(data_dir, tmp_path / "bundle")
    stored = files_containing(data_dir, {**needles, "key id": key["id"].encode()})
    assert "audit.sqlite" in stored.pop("key id"), "the scan must see the stores, the trail's too"
    assert any(name.endswith(".sqlite") for name in (str(p) for p in data_dir.rglob("*")))
    assert (data_dir / "bus").exists()
    assert stored == {}
    exported = files_containing(bundle, {**needles, **hmacs, "key id": key["id"].encode()})
    assert exported.pop("key id") == ["entries.jsonl"]
    assert exported == {}
    # the registry keeps HMACs (that is how keys are checked); the trail never copies them
    kept = files_containing(data_dir, hmacs)
    assert set(kept) == set(hmacs) and all("registry.sqlite" in files for files in kept.values())
    assert not [name for name, files in kept.items() if "audit.sqlite" in files]


def wait_for_audit(gw, target: str, action: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(r.entry.target == target and r.entry.action == action for r in gw.system.audit.records()):
        assert time.monotonic() < deadline, f"{action} on {target} never reached the audit trail"
        time.sleep(0.05)


def export_audit(data_dir: Path, to: Path) -> Path:
    """The trail exported as an auditor gets it (after the gateway stopped: every entry is in)."""
    trail = AuditTrail(SystemClock(), env=sqlite_env(data_dir))
    try:
        manifest = export(trail, None, to, load_signing_key(data_dir / "audit-signing-key.pem"))
    finally:
        trail.close()
    assert manifest["entries"] > 10
    assert verify_bundle(to).ok
    return to
