"""Jobs stored before calls were itemised and jobs priced (tests/fixtures/store_before_layout)
load with today's code: the added fields take their defaults, the index and the cheap state
read agree with the full replay, and such a job can still be completed and priced."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest

from adapters.clock import FixedClock
from adapters.eventstore.environments import open_applications, sqlite_env
from domain.job_pricing import Markup
from domain.jobs import JobStatus
from domain.services.job_index import JobIndex
from domain.services.job_states import JobStates
from domain.services.jobs import JobNotRunning, Jobs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_before_layout"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def ledger(tmp_path: Path):
    for name in ("registry.sqlite", "ledger.sqlite"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    clock = FixedClock(datetime.fromisoformat(EXPECTED["written_at"]))
    registry, ledger = open_applications(sqlite_env(tmp_path), clock, "Europe/Berlin")
    yield ledger
    registry.close()
    ledger.close()


def test_an_old_job_loads_with_its_calls_itemised_and_no_customer_price(ledger) -> None:
    jobs, states, index = Jobs(ledger), JobStates(ledger), JobIndex(ledger)
    summaries = {s.job_id: s for s in index.of_team("t1")}
    for job_id, want in EXPECTED["jobs"].items():
        job = jobs.job(job_id)
        assert (job.status.value, job.calls, job.cost) == (want["status"], want["calls"], want["cost"])
        assert job.max_cost is None and job.customer_price is None and job.created_at.tzinfo
        assert sum(c.cost for c in job.breakdown()) == job.cost
        assert all(c.model is None and c.purpose is None and c.latency_ms is None
                   for c in job.breakdown())
        state = states.state(job_id)
        assert (state.status, state.cost, state.version) == (job.status, job.cost, job.version)
        summary = summaries[job_id]
        assert (summary.status, summary.calls, summary.cost) == (job.status, job.calls, job.cost)


def test_an_old_ended_job_refuses_a_second_completion_and_a_new_one_is_priced(ledger) -> None:
    jobs = Jobs(ledger)
    done = next(UUID(j) for j, w in EXPECTED["jobs"].items() if w["status"] == "completed")
    with pytest.raises(JobNotRunning):
        jobs.complete(done, JobStatus.FAILED, "again", {})
    jobs.set_pricing("t1", {}, Markup("1.5"))
    fresh = jobs.create("u1", "t1", "summary", {})
    fresh.record_call("f1", 3, 1, 1, fresh.created_at)
    ledger.save(fresh)
    priced = jobs.complete(fresh.id, JobStatus.COMPLETED, None, {})
    assert priced.customer_price == 4 and priced.pricing["strategy"] == "markup"  # 4.5 -> 4, half-even


def test_the_cheap_state_read_follows_new_events_and_agrees_with_the_replay_past_evictions(ledger) -> None:
    jobs, states = Jobs(ledger), JobStates(ledger, size=1)
    made = [jobs.create("u1", "t1", "doc", {}) for _ in range(2)]
    for step in range(6):
        job = made[step % 2]
        stored = jobs.job(job.id)
        stored.record_call(f"fact-{step}", 7 + step, 1, 1, stored.created_at)
        ledger.save(stored)
        for other in made:
            state = states.state(other.id, asking=[f"fact-{step}", "never"])
            replayed = jobs.job(other.id)
            assert (state.version, state.cost) == (replayed.version, replayed.cost)
            assert state.recorded == ({f"fact-{step}"} if other is job else set())
    jobs.complete(made[0].id, JobStatus.COMPLETED, None, {})
    assert states.state(made[0].id).status is JobStatus.COMPLETED
    assert states.state("not-a-job") is None and states.state(UUID(int=7)) is None
