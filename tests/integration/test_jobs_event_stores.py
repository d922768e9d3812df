"""The job commands, their cheap state read and the team index on every event store (memory,
SQLite, PostgreSQL): calls itemised from metered facts exactly once, two processes completing
one job (one wins), a job priced by the rule in force, all read back by a fresh process."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from domain.job_pricing import Flat, Markup
from domain.jobs import JobStatus
from domain.services.job_index import JobIndex
from domain.services.job_states import JobStates
from domain.services.jobs import JobNotRunning, Jobs
from domain.services.ledger import BusPosition, Ledger
from domain.services.registry import Registry
from tests.support.stores import START, OpenStore, metered
from tests.support.stores import apps as apps  # noqa: F401 - fixtures, used by name
from tests.support.stores import clock as clock  # noqa: F401
from tests.support.stores import open_store as open_store  # noqa: F401


def test_a_job_s_calls_come_from_its_facts_once_and_a_fresh_process_reads_the_same(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    _, ledger = apps
    jobs = Jobs(ledger)
    jobs.set_pricing("t1", {"doc": Flat(500_000_000)}, Markup("1.5"))
    job = jobs.create("u1", "t1", "doc", {"document_id": "d1"}, max_cost=10**9)
    facts = [metered(n, at=START, cost=100 * n, job=job.id)._replace(
        labels=MappingProxyType({"purpose": f"page_{n}"})) for n in (1, 2, 3)]
    ledger.record_usage(facts[:2], BusPosition("meterline.usage", 0, 2))
    ledger.record_usage(facts, BusPosition("meterline.usage", 0, 5))  # 1 and 2 redelivered
    done = jobs.complete(job.id, JobStatus.COMPLETED, None, {"output": "s.pdf"})
    assert (done.calls, done.cost, done.customer_price) == (3, 600, 500_000_000)

    _, other = open_store()
    again = Jobs(other).job(job.id)
    assert [(c.call_id, c.purpose, c.model, c.cost) for c in again.breakdown()] == [
        (f.event_id, f"page_{n}", "llama-3-8b", 100 * n) for n, f in zip((1, 2, 3), facts, strict=True)]
    assert (again.max_cost, again.customer_price, again.pricing["strategy"]) == (10**9, 500_000_000, "flat")
    [summary] = JobIndex(other).of_team("t1")
    assert (summary.status, summary.calls, summary.cost, summary.customer_price) == (
        JobStatus.COMPLETED, 3, 600, 500_000_000)
    assert JobStates(other).state(job.id).status is JobStatus.COMPLETED


def test_two_processes_completing_one_job_record_one_completion(
        apps: tuple[Registry, Ledger], open_store: OpenStore) -> None:
    _, ledger = apps
    _, second = open_store()
    job = Jobs(ledger).create("u1", "t1", "doc", {})
    states = JobStates(second)
    assert states.state(job.id).status is JobStatus.RUNNING  # cached in the second process
    Jobs(ledger).complete(job.id, JobStatus.FAILED, "model timed out", {})
    with pytest.raises(JobNotRunning):
        Jobs(second).complete(job.id, JobStatus.COMPLETED, None, {})
    assert states.state(job.id).status is JobStatus.FAILED  # brought forward, not stale
    completed = ledger.notification_log.select(start=1, limit=100, topics=["meterline.JobCompleted"])
    assert len(completed) == 1


def test_a_fact_naming_another_team_s_job_is_not_counted_on_it(apps: tuple[Registry, Ledger]) -> None:
    _, ledger = apps
    job = Jobs(ledger).create("u1", "t1", "doc", {})
    stray = metered(7, at=START, cost=500, team="t2", job=job.id)
    ledger.record_usage([stray, metered(8, at=START, cost=300, job=job.id)],
                        BusPosition("meterline.usage", 0, 2))
    assert (Jobs(ledger).job(job.id).calls, Jobs(ledger).job(job.id).cost) == (1, 300)
    assert ledger.count_metered() == 2  # the stray request is still metered, on its own team
