"""A job's max_cost_usd holds under concurrent calls on the same job, and a completed job is
announced by a signed webhook to the team's URL, off the request path."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from domain.webhook_signature import HEADER, verify
from tests.support.jobs_api import JobsWorld, call_cost, jobs_world

MESSAGES = [{"role": "user", "content": "hello"}]
CAP = Decimal("0.001")  # about 25 calls of 40 000 nano-USD, 7 worst cases (64 tokens out) at once


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, receiver: str) -> Iterator[JobsWorld]:
    # `receiver`: it stops after the gateway, which would otherwise wait ~5 s on stopping for a
    # completed job's announcement to a receiver gone
    with jobs_world(tmp_path_factory.mktemp("jobs-limits"), teams=("acme-corp",)) as built:
        yield built


def test_concurrent_calls_on_one_job_never_settle_past_its_max_cost(world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "burst",
                                                    "max_cost_usd": str(CAP)}).json()["job_id"]

    def call(_: int) -> tuple[int, dict]:
        with world.client("acme-corp") as client:
            answer = client.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES})
            return answer.status_code, answer.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(48)))
        answers += list(pool.map(call, range(48)))  # the cap is reached by now: all refused or few
    served = [body for status, body in answers if status == 200]
    refused = [body for status, body in answers if status == 429]
    assert len(served) + len(refused) == len(answers), {s for s, _ in answers}
    assert served and refused
    assert {b["error"]["code"] for b in refused} == {"job_budget_exceeded"}
    spent = sum(Decimal(b["metadata"]["cost_usd"]) for b in served)
    assert spent <= CAP
    assert all(Decimal(b["metadata"]["cost_usd"]) * 10**9 == call_cost(MESSAGES) for b in served)
    with world.client("acme-corp") as api:
        done = api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"}).json()
    assert done["costs"]["total_calls"] == len(served)
    assert Decimal(done["costs"]["total_cost_usd"]) == spent <= CAP


class Receiver(BaseHTTPRequestHandler):
    taken: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["content-length"]))
        Receiver.taken.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.taken = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/jobs"
    server.shutdown()


def test_a_completed_job_is_announced_by_a_webhook_signed_with_the_team_s_secret(
        world: JobsWorld, receiver: str) -> None:
    with world.client() as admin:
        hook = admin.put("/api/admin/teams/acme-corp/job-webhook", json={"url": receiver})
        assert hook.status_code == 200, hook.text
        secret = hook.json()["secret"]
        assert admin.put("/api/admin/teams/acme-corp/job-webhook",
                         json={"url": "ftp://x"}).status_code == 400
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "hooked"}).json()["job_id"]
        api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES}).raise_for_status()
        done = api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"}).json()
    deadline = time.monotonic() + 10
    while not Receiver.taken:
        assert time.monotonic() < deadline, "no webhook arrived"
        time.sleep(0.02)
    headers, body = Receiver.taken[0]
    verify(secret, headers.get(HEADER) or headers.get(HEADER.lower()), body, time.time())
    event = json.loads(body)
    assert event["type"] == "meterline.job.completed" and event["data"]["job_id"] == job_id
    assert event["data"]["costs"] == done["costs"] and event["data"]["team_id"] == "acme-corp"
    with pytest.raises(ValueError, match="does not match"):
        verify("whsec_another", headers.get(HEADER), body, time.time())


def worst_case(world: JobsWorld, body: dict) -> int:
    """What a call may cost at most, as the refusal on a job capped at one nano-dollar says."""
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "probe", "max_cost_usd": "0.000000001"}
                          ).json()["job_id"]
        refusal = api.post(f"/api/jobs/{job_id}/llm-call", json=body).json()["error"]["message"]
    return int(Decimal(re.search(r"may cost up to \$([0-9.]+)", refusal)[1]) * 10**9)


def test_a_call_whose_worst_case_could_pass_the_cap_is_refused_and_a_smaller_one_fits(
        world: JobsWorld) -> None:
    small = {"messages": MESSAGES, "max_tokens": 1}
    cap = worst_case(world, small) + 1_000
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={
            "job_type": "tight", "max_cost_usd": str(Decimal(cap) / 10**9)}).json()["job_id"]
        large = api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES})
        assert large.status_code == 429, large.text
        assert large.json()["error"]["code"] == "job_budget_exceeded"
        assert "max_cost_usd" in large.json()["error"]["message"]
        fits = api.post(f"/api/jobs/{job_id}/llm-call", json=small)
        assert fits.status_code == 200, fits.text
        assert Decimal(fits.json()["metadata"]["cost_usd"]) * 10**9 == call_cost(MESSAGES, completion=1)
        again = api.post(f"/api/jobs/{job_id}/llm-call", json=small)
        assert again.status_code == 429  # what is left is less than another worst case


def test_a_v1_call_that_could_pass_the_jobs_cap_is_refused_before_it_is_served(world: JobsWorld) -> None:
    """/v1 calls with the job header reserve their worst case against the job's cap, as llm-call
    does: on a job capped at one nano-dollar not even the first one is served."""
    body = {"model": "sim", "messages": MESSAGES, "max_tokens": 1}
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "spent", "max_cost_usd": "0.000000001"}
                          ).json()["job_id"]
        first = api.post("/v1/chat/completions", headers={"x-meterline-job": job_id}, json=body)
        costs = api.get(f"/api/jobs/{job_id}/costs").json()["costs"]
    assert first.status_code == 429 and first.json()["error"]["code"] == "job_budget_exceeded"
    assert costs["total_cost_usd"] == "0" and costs["breakdown"] == []


def test_a_team_s_hard_budget_refuses_a_job_s_call_like_a_v1_request(tmp_path) -> None:
    with jobs_world(tmp_path, teams=("capped",)) as capped:
        with capped.client() as admin:
            admin.put("/api/admin/budgets/team/capped", json={"limit_usd": "0.000001", "mode": "hard"}
                      ).raise_for_status()
        with capped.client("capped") as api:
            job_id = api.post("/api/jobs/create", json={"job_type": "t"}).json()["job_id"]
            refused = api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES})
            direct = api.post("/v1/chat/completions", json={"model": "sim", "messages": MESSAGES})
            costs = api.get(f"/api/jobs/{job_id}/costs").json()["costs"]
    assert refused.status_code == direct.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == direct.json()["error"]["code"] == "insufficient_quota"
    assert "team" in refused.json()["error"]["message"] and refused.headers["x-request-id"]
    assert costs["breakdown"] == [] and costs["total_cost_usd"] == "0"


def test_v1_calls_with_the_job_header_share_the_jobs_cap_with_llm_calls_under_concurrency(
        world: JobsWorld) -> None:
    """Calls on /v1 with X-Meterline-Job reserve against max_cost_usd as llm-call does: mixed and
    concurrent, streamed or not, they never settle past it, and the completion counts them all."""
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "mixed",
                                                    "max_cost_usd": str(CAP)}).json()["job_id"]

    def call(n: int) -> tuple[int, int]:
        with world.client("acme-corp") as client:
            if n % 3 == 0:
                answer = client.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES})
                if answer.status_code != 200:
                    return answer.status_code, 0
                return 200, int(Decimal(answer.json()["metadata"]["cost_usd"]) * 10**9)
            body = {"model": "sim", "messages": MESSAGES, "stream": n % 3 == 2}
            answer = client.post("/v1/chat/completions", json=body, headers={"x-meterline-job": job_id})
            return answer.status_code, call_cost(MESSAGES) if answer.status_code == 200 else 0

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(96)))
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 429} and 429 in statuses, statuses
    served = [cost for status, cost in answers if status == 200]
    assert sum(served) <= CAP * 10**9
    with world.client("acme-corp") as api:
        done = api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"}).json()
    assert done["costs"]["total_calls"] == len(served)
    assert Decimal(done["costs"]["total_cost_usd"]) * 10**9 == sum(served) <= CAP * 10**9
