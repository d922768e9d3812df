"""Stores users already have open and replay with today's code.

`tests/fixtures/store_before_layout/` was written by the code before the modules moved
(commit 1bb1377; its README holds the script). Stored events name their classes by explicit
topics (`meterline.KeyIssued`, …), never by module path, so moving a module must not change
what a store means. This test is the proof: never regenerate the fixture.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest

from adapters.clock import FixedClock
from adapters.eventstore.environments import open_applications, sqlite_env
from domain.budget import Budget
from domain.credentials import fingerprint
from domain.quota_policy import Scope
from domain.services.ledger import BusPosition, Ledger
from domain.services.registry import Registry
from domain.usage import RequestMetered, UsageSource

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_before_layout"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def old_store(tmp_path: Path):
    for name in ("registry.sqlite", "ledger.sqlite"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    clock = FixedClock(datetime.fromisoformat(EXPECTED["written_at"]))
    registry, ledger = open_applications(sqlite_env(tmp_path), clock, "Europe/Berlin")
    yield registry, ledger, clock
    registry.close()
    ledger.close()


def topics(app: Registry | Ledger) -> dict[str, int]:
    return dict(Counter(n.topic for n in app.notification_log.select(start=1, limit=1000)))


def fold(app: Registry | Ledger, aggregate_id: UUID) -> dict:
    aggregate = None
    for domain_event in app.events.get(aggregate_id):
        aggregate = domain_event.mutate(aggregate)
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def test_a_store_written_before_the_layout_change_reads_back_the_same(old_store) -> None:
    registry, ledger, _ = old_store
    for key in EXPECTED["keys"].values():
        current = registry.key(UUID(key["id"]))
        assert (current.status.value, current.secret_hmac, current.models) == (
            key["status"], key["secret_hmac"], key["models"])
    for scope_key, want in EXPECTED["budgets"].items():
        scope, scope_id = scope_key.split("/", 1)
        budget = ledger.budget(Scope(scope), scope_id)
        assert {"period_spent": budget.period_spent, "blocked": budget.blocked,
                "crossed": sorted(budget.crossed), "version": budget.version} == want
    for job_id, want in EXPECTED["jobs"].items():
        job = ledger.job(UUID(job_id))
        assert {"status": job.status.value, "calls": job.calls, "cost": job.cost} == want
    assert {"count": ledger.count_metered(),
            "cost": sum(f.cost for f in ledger.metered_facts())} == EXPECTED["metered"]
    assert [ledger.position("meterline.usage", p) for p in (0, 1)] == EXPECTED["positions"]
    assert topics(registry) == EXPECTED["registry_topics"]
    assert topics(ledger) == EXPECTED["ledger_topics"]


def test_every_aggregate_of_the_old_store_replays_to_what_the_repository_loads(old_store) -> None:
    registry, ledger, _ = old_store
    for app in (registry, ledger):
        ids = {n.originator_id for n in app.notification_log.select(start=1, limit=1000)
               if n.topic != "meterline.UsageBatchRecorded"}
        assert ids
        for aggregate_id in ids:
            loaded = {k: v for k, v in vars(app.repository.get(aggregate_id)).items()
                      if k != "_pending_events"}
            assert loaded == fold(app, aggregate_id)


def test_the_old_store_takes_new_facts_and_new_keys_after_the_upgrade(old_store) -> None:
    registry, ledger, clock = old_store
    laptop = EXPECTED["keys"]["laptop"]["id"]
    fact = RequestMetered(
        event_id="5f0c1a52-8d7e-4c1b-9a55-000000000001", occurred_at=clock.now(), key_id=laptop,
        user_id="u1", team_id="t1", model="llama-3-8b", endpoint="/v1/chat/completions",
        prompt_tokens=10, completion_tokens=5, cached_tokens=0, latency_ms=9, status=200,
        usage_source=UsageSource.UPSTREAM, price_version=1, cost=7)
    before = ledger.budget(Scope.KEY, laptop).period_spent
    result = ledger.record_usage([fact], BusPosition("meterline.usage", 0, EXPECTED["positions"][0] + 1))
    assert (result.recorded, ledger.budget(Scope.KEY, laptop).period_spent) == (1, before + 7)
    secret = "mlk_after_upgrade"
    key = registry.issue_key("u1", "after", ["llama-3-8b"],
                             fingerprint(secret, EXPECTED["server_secret"].encode()), secret)
    assert registry.key(key.id).user_id == "u1"
    assert Budget.id_for(Scope.KEY, laptop) in ledger.repository
