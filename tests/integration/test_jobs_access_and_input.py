"""The job-cost API against the wrong caller and the wrong input: another team's credentials
get 404 on every job route, /v1's X-Meterline-Job is checked, and malformed or huge bodies
are clear 4xx answers, never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.jobs_api import JobsWorld, jobs_world

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsWorld]:
    with jobs_world(tmp_path_factory.mktemp("jobs-access"), teams=("acme-corp", "rival")) as built:
        yield built


@pytest.fixture(scope="module")
def acme_job(world: JobsWorld) -> str:
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "document_analysis"}).json()["job_id"]
        api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES}).raise_for_status()
        return job_id


def every_job_route(job_id: str) -> list[tuple[str, str, dict | None]]:
    return [("POST", f"/api/jobs/{job_id}/llm-call", {"messages": MESSAGES}),
            ("POST", f"/api/jobs/{job_id}/complete", {"status": "completed"}),
            ("GET", f"/api/jobs/{job_id}/costs", None)]


def team_routes(team: str) -> list[tuple[str, str, dict | None]]:
    month = datetime.now(UTC).strftime("%Y-%m")
    return [("GET", f"/api/teams/{team}/usage?period={month}", None),
            ("GET", f"/api/teams/{team}/jobs", None),
            ("POST", "/api/jobs/create", {"team_id": team, "user_id": "x", "job_type": "t"})]


@pytest.mark.parametrize("credential", ["key", "user_token"])
def test_another_team_s_key_or_user_token_gets_404_on_every_job_and_team_route(
        world: JobsWorld, acme_job: str, credential: str) -> None:
    token = world.keys["rival"] if credential == "key" else world.user_tokens["rival"]
    with world.client(token=token) as rival:
        for method, path, body in [*every_job_route(acme_job), *team_routes("acme-corp")]:
            answer = rival.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert acme_job not in answer.text or "no job" in answer.text
    with world.client("acme-corp") as api:  # and the job is untouched
        costs = api.get(f"/api/jobs/{acme_job}/costs").json()
        assert costs["status"] == "running" and len(costs["costs"]["breakdown"]) == 1


def test_unknown_and_malformed_job_ids_are_404_like_another_team_s(world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        for job_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "x" * 300):
            for method, path, body in every_job_route(job_id):
                answer = api.request(method, path, json=body)
                assert answer.status_code == 404, (path, answer.text)
                assert answer.json()["error"]["code"] == "job_not_found"


def test_the_team_s_user_token_and_the_admin_token_read_the_job_but_only_a_key_makes_calls(
        world: JobsWorld, acme_job: str) -> None:
    for token in (world.user_tokens["acme-corp"], None):
        with world.client(token=token) as reader:
            assert reader.get(f"/api/jobs/{acme_job}/costs").status_code == 200
            refused = reader.post(f"/api/jobs/{acme_job}/llm-call", json={"messages": MESSAGES})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "api_key_required"
    with world.client() as admin:
        assert admin.post("/api/jobs/create", json={"job_type": "t"}).status_code == 400  # whose team?


def test_no_credentials_or_a_wrong_one_is_401(world: JobsWorld, acme_job: str) -> None:
    with world.client(token="sk-not-a-key") as stranger:
        assert stranger.get(f"/api/jobs/{acme_job}/costs").status_code == 401
    with world.client("acme-corp") as api:
        assert api.get(f"/api/jobs/{acme_job}/costs", headers={"authorization": ""}).status_code == 401


def v1_call(world: JobsWorld, team: str, job: str) -> object:
    with world.client(team) as api:
        return api.post("/v1/chat/completions", headers={"x-meterline-job": job},
                        json={"model": "sim", "messages": MESSAGES})


def test_a_v1_call_with_another_team_s_job_an_unknown_one_or_a_garbled_id_is_refused(
        world: JobsWorld, acme_job: str) -> None:
    other = v1_call(world, "rival", acme_job)
    assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
    unknown = v1_call(world, "acme-corp", "00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404 and "X-Meterline-Job" in unknown.json()["error"]["message"]
    garbled = v1_call(world, "acme-corp", "job-1")
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == "invalid_job"


def test_a_v1_call_on_a_completed_job_is_409_and_one_on_a_running_job_counts_toward_it(
        world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": "direct"}).json()["job_id"]
        served = v1_call(world, "acme-corp", job_id)
        assert served.status_code == 200, served.text
        request_id = served.headers["x-request-id"]
        deadline = time.monotonic() + 10
        while not (breakdown := api.get(f"/api/jobs/{job_id}/costs").json()["costs"]["breakdown"]):
            assert time.monotonic() < deadline, "the ledger never recorded the /v1 call on the job"
            time.sleep(0.05)
        assert [c["call_id"] for c in breakdown] == [request_id]
        assert breakdown[0]["model"] == "sim" and breakdown[0]["purpose"] is None
        assert api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"}).status_code == 200
    ended = v1_call(world, "acme-corp", job_id)
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "job_not_running"


BAD_BODIES = [
    (b"{not json", 400), (b"[1, 2]", 400), (b'"text"', 400), (b"{" * 100 + b"}" * 100, 400),
    (b'{"messages": "hello"}', 400), (b'{"messages": []}', 400), (b'{"messages": [1]}', 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": true}', 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "purpose": "\\u0000"}', 400),
    (b'{"messages": [{"role": "user", "content": "x"}], "model": "no-such-model"}', 404),
    (b'{"messages": [{"role": "user", "content": "x"}], "model": 7}', 400),
]


@pytest.mark.parametrize(("raw", "status"), BAD_BODIES)
def test_a_malformed_llm_call_body_is_a_clear_4xx_naming_what_is_wrong(
        world: JobsWorld, acme_job: str, raw: bytes, status: int) -> None:
    with world.client("acme-corp") as api:
        answer = api.post(f"/api/jobs/{acme_job}/llm-call", content=raw,
                          headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]


BAD_CREATES = [
    {"job_type": ""}, {"job_type": "a b"}, {"job_type": 5}, {"job_type": "x" * 200}, {},
    {"job_type": "t", "max_cost_usd": "abc"}, {"job_type": "t", "max_cost_usd": "-1"},
    {"job_type": "t", "max_cost_usd": "0.0000000001"}, {"job_type": "t", "max_cost_usd": True},
    {"job_type": "t", "metadata": "doc"}, {"job_type": "t", "metadata": {"blob": "x" * 20_000}},
    {"job_type": "t", "surprise": 1}, {"job_type": "t", "user_id": ""},
]


@pytest.mark.parametrize("body", BAD_CREATES)
def test_a_malformed_create_body_is_a_400(world: JobsWorld, body: dict) -> None:
    with world.client("acme-corp") as api:
        answer = api.post("/api/jobs/create", json=body)
    assert answer.status_code == 400, answer.text


def test_a_body_over_the_size_cap_is_413_and_malformed_queries_are_400(
        world: JobsWorld, acme_job: str) -> None:
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * 2_000_000 + b'"}]}'
    with world.client("acme-corp") as api:
        assert api.post(f"/api/jobs/{acme_job}/llm-call", content=huge).status_code == 413
        assert api.post("/api/jobs/create", content=huge).status_code == 413
        assert api.post(f"/api/jobs/{acme_job}/complete", json={"status": "done"}).status_code == 400
        for query in ("period=2024-13", "period=24-10", "period=", "period=2024-10-01"):
            assert api.get(f"/api/teams/acme-corp/usage?{query}").status_code == 400, query
        assert api.get("/api/teams/acme-corp/usage").status_code == 400
        for query in ("status=done", "from=yesterday", "cursor=%%%", "cursor=bm9wZQ", "limit=0"):
            assert api.get(f"/api/teams/acme-corp/jobs?{query}").status_code == 400, query


def test_the_team_s_job_list_filters_and_pages_without_repeats(world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        made = [api.post("/api/jobs/create", json={"job_type": "paging"}).json()["job_id"] for _ in range(5)]
        seen, cursor = [], None
        while True:
            page = api.get("/api/teams/acme-corp/jobs", params={
                "job_type": "paging", "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            seen += [j["job_id"] for j in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        running = api.get("/api/teams/acme-corp/jobs", params={"status": "completed",
                                                                "job_type": "paging"}).json()["data"]
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert running == []


def test_a_job_s_events_name_who_created_and_completed_it_for_the_audit_trail(world: JobsWorld) -> None:
    with world.client(token=world.user_tokens["acme-corp"]) as user:
        job_id = user.post("/api/jobs/create", json={"job_type": "audited"}).json()["job_id"]
    with world.client() as admin:
        admin.post(f"/api/jobs/{job_id}/complete", json={"status": "failed"}).raise_for_status()
    created, completed = world.gw.system.ledger.events.get(UUID(job_id))
    assert created.actor == "user:dev@acme-corp"
    assert completed.actor.startswith("admin:")


SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
CREATE_BODIES = st.dictionaries(st.sampled_from(["team_id", "user_id", "job_type", "metadata", "max_cost_usd",
                                                 "other"]), JSON, max_size=5)
CALL_BODIES = st.dictionaries(st.sampled_from(["messages", "purpose", "model", "temperature", "max_tokens",
                                               "stream"]), JSON, max_size=5)
FUZZED: dict[str, str] = {}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(create=CREATE_BODIES, call=CALL_BODIES, complete=JSON)
def test_no_body_makes_a_job_route_fail_with_a_500(world: JobsWorld, create: dict, call: dict,
                                                   complete: object) -> None:
    with world.client("acme-corp") as api:
        if "job" not in FUZZED:  # a job of this test's own: a body may complete it
            FUZZED["job"] = api.post("/api/jobs/create", json={"job_type": "fuzz"}).json()["job_id"]
        for path, body in (("/api/jobs/create", create), (f"/api/jobs/{FUZZED['job']}/llm-call", call),
                           (f"/api/jobs/{FUZZED['job']}/complete", complete)):
            answer = api.post(path, json=body)
            assert answer.status_code < 500, (path, body, answer.text)
            assert answer.status_code == 200 or answer.json()["error"]["message"]
