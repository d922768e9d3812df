"""The job-cost API against hostile input: pricing bodies whose strategy is not a string, markup
factors whose exact fraction would be a billion digits, money as JSON numbers that a float would
round, amounts past a trillion USD, months in other scripts' digits, and a call that reads its job
as running just before the job completes. Each is a clear 4xx or exact; never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import uuid4

import pytest

from domain.jobs import JobStatus
from domain.services.job_states import JobState
from gateway.api.jobs_guard import Hold, JobGuard, Refusal
from tests.support.jobs_api import JobsWorld, jobs_world

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsWorld]:
    with jobs_world(tmp_path_factory.mktemp("jobs-attacks"), teams=("acme-corp",)) as built:
        yield built


def assert_clear_400(answer, field: str, *words: str) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert field in error["message"] and all(w in error["message"] for w in words), error


# ----- customer pricing (admins) ----------------------------------------------------------------

@pytest.mark.parametrize("strategy", [["flat"], {"flat": 1}, 5, None])
def test_a_pricing_rule_whose_strategy_is_not_a_string_is_a_400_not_a_500(world, strategy):
    with world.client() as admin:
        answer = admin.put("/api/admin/teams/acme-corp/pricing",
                           json={"job_types": {"t": {"strategy": strategy, "price_usd": "1"}}})
        assert_clear_400(answer, "job_types.t.strategy", "flat", "markup")


@pytest.mark.parametrize("factor", ["1e-999999999", "1E+2", " 1.5", "1_000", "-0", ".5", "1.", "٣"])
def test_a_markup_factor_must_be_plain_decimal_digits_and_is_refused_at_once(world, factor):
    with world.client() as admin:
        started = time.perf_counter()
        answer = admin.put("/api/admin/teams/acme-corp/pricing",
                           json={"job_types": {"t": {"strategy": "markup", "factor": factor}}})
        assert time.perf_counter() - started < 2  # 1e-999999999 as a fraction: a billion digits
        assert_clear_400(answer, "factor", "no exponent")


def test_a_price_past_a_trillion_usd_or_job_types_that_are_not_an_object_are_400s(world):
    with world.client() as admin:
        assert_clear_400(admin.put("/api/admin/teams/acme-corp/pricing", json={
            "job_types": {"t": {"strategy": "flat", "price_usd": "1e59"}}}), "price_usd", "1,000,000,000,000")
        assert_clear_400(admin.put("/api/admin/teams/acme-corp/pricing", json={"job_types": []}), "job_types")
        fine = admin.put("/api/admin/teams/acme-corp/pricing", json={
            "job_types": {"t": {"strategy": "flat", "price_usd": "1000000000000"}}})
        assert fine.json()["job_types"]["t"]["price_usd"] == "1000000000000"


# ----- a job's max_cost_usd -----------------------------------------------------------------------

def create(world: JobsWorld, raw: bytes):
    with world.client("acme-corp") as api:
        return api.post("/api/jobs/create", content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize("number, shown", [(b"123456789012.123456789", "123456789012.123456789"),
                                           (b"0.25", "0.25"), (b"999999999999", "999999999999"),
                                           (b"1e2", "100")])
def test_max_cost_as_a_json_number_is_read_exactly_not_through_a_float(world, number, shown):
    answer = create(world, b'{"job_type": "t", "max_cost_usd": ' + number + b"}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["max_cost_usd"] == shown


@pytest.mark.parametrize("number", [b"0.30000000000000001", b"123456789012345678901234567890", b"1e-10",
                                    b'"1000000000000.000000001"', b"0", b"-1"])
def test_max_cost_below_a_nano_dollar_or_past_a_trillion_usd_is_refused_not_rounded(world, number):
    answer = create(world, b'{"job_type": "t", "max_cost_usd": ' + number + b"}")
    assert_clear_400(answer, "max_cost_usd")


# ----- the team's usage -----------------------------------------------------------------------------

@pytest.mark.parametrize("period", ["٢٠٢٦-01", "２０２６-01", "2026-13", "2026-1"])
def test_a_usage_month_in_other_scripts_digits_is_a_400_not_echoed_back(world, period):
    with world.client("acme-corp") as api:
        answer = api.get("/api/teams/acme-corp/usage", params={"period": period})
        assert_clear_400(answer, "period", "YYYY-MM")


def test_a_job_list_window_that_ends_before_it_starts_is_a_400_not_an_empty_page(world):
    with world.client("acme-corp") as api:
        answer = api.get("/api/teams/acme-corp/jobs", params={"from": "2026-02-01", "to": "2026-01-01"})
        assert_clear_400(answer, "'to'", "after 'from'")
        day = api.get("/api/teams/acme-corp/jobs", params={"from": "2026-01-01", "to": "2026-01-02"})
        assert day.status_code == 200


# ----- a call racing its job's completion -------------------------------------------------------

def _state(job_id, status: JobStatus, version: int = 2) -> JobState:
    return JobState(job_id, version, "acme-corp", status, None, 0, frozenset())


def test_a_call_that_reserves_after_its_job_completed_here_or_elsewhere_is_refused():
    guard, here, elsewhere = JobGuard(), str(uuid4()), uuid4()
    assert isinstance(guard.reserve(here, None, 10), Hold)
    guard.settle(Hold(here, 10), "fact-1", 7)
    assert guard.begin_closing(here)
    guard.end_closing(here, done=True)
    # a call that read the job as running before the completion saved it reserves now
    assert guard.reserve(here, None, 10) == Refusal(True, 0, 0)
    assert guard.pending(here) == (0, 0)
    guard.observe(_state(elsewhere, JobStatus.RUNNING, 1))
    guard.observe(_state(elsewhere, JobStatus.COMPLETED))  # another gateway completed it
    assert isinstance(guard.reserve(str(elsewhere), None, 10), Refusal)


def test_a_completion_that_failed_lets_calls_go_on_and_a_completed_job_answers_409_on_every_path(world):
    guard = JobGuard()
    job = str(uuid4())
    assert guard.begin_closing(job)
    guard.end_closing(job, done=False)
    assert isinstance(guard.reserve(job, None, 10), Hold)
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "t"}).json()["job_id"]
        assert api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES}).status_code == 200
        assert api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"}).status_code == 200
        late = [api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES}),
                api.post("/v1/chat/completions", json={"model": "sim", "messages": MESSAGES},
                         headers={"x-meterline-job": job_id}),
                api.post(f"/api/jobs/{job_id}/complete", json={"status": "failed"})]
        assert [answer.status_code for answer in late] == [409, 409, 409], [a.text for a in late]
        assert len(api.get(f"/api/jobs/{job_id}/costs").json()["costs"]["breakdown"]) == 1


# ----- read your writes ---------------------------------------------------------------------------

def test_a_call_s_cost_is_in_the_job_s_costs_and_the_team_s_usage_as_soon_as_its_answer_came(world):
    """The ledger records a call on its job a moment after the answer: a read from the same gateway
    waits for it (16 of 20 reads missed the call before)."""
    month = time.strftime("%Y-%m", time.gmtime())
    with world.client("acme-corp") as api:
        for n in range(5):
            job_id = api.post("/api/jobs/create", json={"job_type": f"ryw-{n}"}).json()["job_id"]
            call = api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES}).json()
            cost = call["metadata"]["cost_usd"]
            costs = api.get(f"/api/jobs/{job_id}/costs").json()["costs"]
            assert (len(costs["breakdown"]), costs["total_cost_usd"]) == (1, cost)
            listed = api.get("/api/teams/acme-corp/jobs", params={"job_type": f"ryw-{n}"}).json()["data"]
            assert (listed[0]["total_calls"], listed[0]["total_cost_usd"]) == (1, cost)
            usage = api.get("/api/teams/acme-corp/usage", params={"period": month}).json()
            assert usage["job_types"][f"ryw-{n}"]["cost_usd"] == cost
