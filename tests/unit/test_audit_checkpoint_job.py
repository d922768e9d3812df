"""The scheduler's audit job signs a quiet trail's head once the checkpoint interval has passed,
and only then; an append-only process without a key schedules nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.clock import FixedClock
from adapters.eventstore import memory
from adapters.eventstore.environments import memory_env
from domain.audit import AuditEntry
from domain.services.audit_trail import AuditTrail
from infra.workers.scheduler import build_scheduler, checkpoint_if_due

START = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)


class NoPrincipals:
    def budget_scopes(self):
        return []

    def api_keys(self):
        return []


def test_a_quiet_trail_is_signed_once_the_interval_has_passed_and_not_before() -> None:
    clock, name = FixedClock(START), "checkpoint-job"
    trail = AuditTrail(clock, Ed25519PrivateKey.generate(), env=memory_env(name))
    try:
        trail.append([AuditEntry(time=clock.now(), actor="admin", action="KeyRevoked", target="key:1")])
        assert checkpoint_if_due(trail) is False and trail.last_checkpoint() is None
        clock.advance(minutes=5)
        assert checkpoint_if_due(trail) is True
        assert trail.last_checkpoint().seq == 1 and trail.checkpoint_error is None
        clock.advance(minutes=10)
        assert checkpoint_if_due(trail) is False  # nothing new to sign
    finally:
        trail.close()
        memory.forget(name)


def test_the_scheduler_adds_the_checkpoint_job_only_for_a_trail_that_can_sign() -> None:
    clock, name = FixedClock(START), "checkpoint-jobs"
    signing = AuditTrail(clock, Ed25519PrivateKey.generate(), env=memory_env(name))
    reading = AuditTrail(clock, None, env=memory_env(name))
    try:
        jobs = {j.id for j in build_scheduler(None, None, NoPrincipals(), audit=signing).get_jobs()}
        assert jobs == {"budgets-and-keys", "audit-checkpoint"}
        assert {j.id for j in build_scheduler(None, None, NoPrincipals(), audit=reading).get_jobs()} == {
            "budgets-and-keys"}
        assert timedelta(minutes=5) == signing.checkpoint_interval
    finally:
        signing.close()
        reading.close()
        memory.forget(name)
