"""The audit recorder follows the registry's log and the ledger's budget and job events into the trail,
on every event store: each event once, in its log's order, across restarts and racing recorders,
and never a secret or its HMAC."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import FixedClock
from domain.audit import ChainedEntry
from domain.credentials import TOKEN_PREFIX, fingerprint, new_secret
from domain.principals import Role
from domain.quota_policy import BudgetPolicy, Mode, Scope
from domain.services.audit_of_events import LEDGER_TOPICS
from domain.services.audit_trail import AuditTrail
from domain.services.ledger import Ledger
from domain.services.registry import Registry
from infra.workers.audit_recorder import AuditRecorder
from tests.support.stores import DOLLAR, SERVER_SECRET, OpenStore, issue, metered, seed_registry
from tests.support.stores import clock as clock  # fixtures, used by name
from tests.support.stores import open_store as open_store

KEY = Ed25519PrivateKey.generate()


def open_trail(store_env: dict[str, str], clock: FixedClock, opened: list) -> AuditTrail:
    trail = AuditTrail(clock, KEY, env=dict(store_env))
    opened.append(trail)
    return trail


def entries(trail: AuditTrail) -> list[ChainedEntry]:
    records = list(trail.records())
    assert all(isinstance(r, ChainedEntry) for r in records)
    return records  # type: ignore[return-value]


def scripted_session(registry: Registry, ledger: Ledger, clock: FixedClock) -> dict[str, str]:
    """Issue, rotate, revoke a key; set its budget and spend past 80 %; returns the secrets minted."""
    seed_registry(registry)
    token = new_secret(TOKEN_PREFIX)
    registry.issue_user_token("u1", fingerprint(token, SERVER_SECRET))
    key, secret = issue(registry, "u1", "laptop")
    clock.advance(timedelta(seconds=1))
    rotated = new_secret()
    registry.rotate_key(key.id, fingerprint(rotated, SERVER_SECRET), rotated, grace_seconds=60)
    ledger.set_budget(Scope.KEY, str(key.id), BudgetPolicy(limit=DOLLAR, mode=Mode.HARD))
    ledger.record_usage([metered(n, at=clock.now(), cost=DOLLAR // 2, key=str(key.id)) for n in (1, 2)])
    clock.advance(timedelta(seconds=1))
    registry.revoke_key(key.id, "laptop stolen")
    return {"key_id": str(key.id), "secret": secret, "rotated": rotated, "token": token,
            "secret hmac": fingerprint(secret, SERVER_SECRET),
            "rotated hmac": fingerprint(rotated, SERVER_SECRET),
            "token hmac": fingerprint(token, SERVER_SECRET)}


def test_a_scripted_session_is_recorded_in_order_with_its_targets_and_the_chain_verifies(
        open_store: OpenStore, store_env, clock) -> None:
    registry, ledger = open_store()
    opened: list = []
    trail = open_trail(store_env, clock, opened)
    minted = scripted_session(registry, ledger, clock)
    AuditRecorder(trail, registry, ledger).record_all()
    key = f"key:{minted['key_id']}"
    recorded = [(e.entry.action, e.entry.target) for e in entries(trail)]
    assert [a for a, t in recorded if t == key] == [
        "KeyIssued", "KeyRotated", "KeyRevoked", "BudgetOpened", "BudgetSet", "BudgetThresholdCrossed",
        "BudgetThresholdCrossed", "BudgetThresholdCrossed", "BudgetExceeded", "QuotaBlocked"]
    crossed = [e.entry.details["percent"] for e in entries(trail)
               if e.entry.action == "BudgetThresholdCrossed"]
    assert crossed == [80, 95, 100]
    assert ("UserRegistered", "user:u1") in recorded and ("UserTokenIssued", "user:u1") in recorded
    assert ("TeamCreated", "team:t1") in recorded and ("PriceSet", "model:qwen-2-7b") in recorded
    assert not {a for a, _ in recorded} & {"SpendAccrued", "UsageBatchRecorded", "JobCallRecorded"}
    by_action = {e.entry.action: e.entry for e in entries(trail)}
    assert by_action["KeyRevoked"].details["reason"] == "laptop stolen"
    assert by_action["KeyRotated"].details["prefix"] == minted["rotated"][:10]
    assert by_action["BudgetSet"].details["limit"] == DOLLAR
    assert all(e.entry.actor == "system" for e in entries(trail))
    assert trail.verify(KEY.public_key()).ok
    text = "\n".join(json.dumps(e.as_record()) for e in entries(trail))
    for name in ("secret", "rotated", "token", "secret hmac", "rotated hmac", "token hmac"):
        assert minted[name] not in text, f"the {name} is in the trail"
    for trail_ in opened:
        trail_.close()


def test_the_recorder_resumes_after_a_restart_without_recording_anything_twice(
        open_store: OpenStore, store_env, clock) -> None:
    opened: list = []
    registry, ledger = open_store()
    trail = open_trail(store_env, clock, opened)
    scripted_session(registry, ledger, clock)
    first = AuditRecorder(trail, registry, ledger, page=3)  # many pages: a restart lands between them
    first.record_once()
    first.record_once()
    trail.close()
    registry, ledger = open_store()  # the process comes back: new applications on the same store
    trail = open_trail(store_env, clock, opened)
    registry.register_user("u2", Role.USER, team_id="t1")
    issue(registry, "u2", "ci")
    AuditRecorder(trail, registry, ledger, page=3).record_all()
    again = AuditRecorder(open_trail(store_env, clock, opened), *open_store())
    assert again.record_all() == 0
    recorded = entries(trail)
    assert [e.seq for e in recorded] == list(range(1, len(recorded) + 1))
    budget_and_job_events = len(ledger.notification_log.select(start=1, limit=1000, topics=LEDGER_TOPICS))
    assert len(recorded) == registry.recorder.max_notification_id() + budget_and_job_events
    assert [e.entry.action for e in recorded].count("KeyIssued") == 2
    assert trail.verify(KEY.public_key()).ok
    for trail_ in opened:
        trail_.close()


def test_two_recorders_racing_over_the_same_logs_record_each_event_once(
        open_store: OpenStore, store_env, clock) -> None:
    opened: list = []
    registry, ledger = open_store()
    seed_registry(registry)
    for n in range(30):
        issue(registry, "u1", f"key-{n}")
    recorders = [AuditRecorder(open_trail(store_env, clock, opened), *open_store(), page=7) for _ in range(2)]
    threads = [threading.Thread(target=r.record_all) for r in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    trail = open_trail(store_env, clock, opened)
    recorded = entries(trail)
    assert [e.entry.action for e in recorded].count("KeyIssued") == 30
    assert len(recorded) == registry.recorder.max_notification_id()
    assert trail.verify(KEY.public_key()).ok
    for trail_ in opened:
        trail_.close()
