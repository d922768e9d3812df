"""Seed 002's examples 1-5, end to end: the job-cost API on a real gateway over the simulator,
every call through the metered /v1 path, every amount exact to the nano-dollar."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from testkit.simulator.openai_shapes import chat_prompt_tokens
from tests.support.jobs_api import COMPLETION_TOKENS, JobsWorld, call_cost, jobs_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsWorld]:
    with jobs_world(tmp_path_factory.mktemp("jobs-seed")) as built:
        with built.client() as admin:
            admin.put("/api/admin/teams/acme-corp/pricing", json={"job_types": {
                "document_analysis": {"strategy": "flat", "price_usd": "0.50"}}}).raise_for_status()
        yield built


NANO = Decimal("0.000000001")


def usd(nanos: int) -> Decimal:
    return Decimal(nanos) / Decimal(10**9)


def page_messages(page: int) -> list[dict]:
    return [{"role": "system", "content": "You are a legal document analyzer."},
            {"role": "user", "content": f"Analyze page {page}: [page content here]"}]


def test_example_1_a_document_analysis_job_costs_the_sum_of_its_six_calls_and_earns_its_flat_price(
        world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        created = api.post("/api/jobs/create", json={
            "team_id": "acme-corp", "user_id": "john@acme.com", "job_type": "document_analysis",
            "metadata": {"document_id": "doc_12345", "filename": "contract.pdf", "pages": 5}})
        assert created.status_code == 200, created.text
        job = created.json()
        assert {k: job[k] for k in ("team_id", "user_id", "job_type", "status")} == {
            "team_id": "acme-corp", "user_id": "john@acme.com", "job_type": "document_analysis",
            "status": "running"}
        datetime.fromisoformat(job["created_at"])
        job_id, expected, latencies = job["job_id"], 0, []
        for page in range(1, 6):
            result = api.post(f"/api/jobs/{job_id}/llm-call", json={
                "messages": page_messages(page), "purpose": f"page_{page}_analysis"})
            assert result.status_code == 200, result.text
            meta = result.json()["metadata"]
            cost = call_cost(page_messages(page))
            assert meta["cost_usd"] == str(usd(cost).normalize())
            assert meta["tokens_used"] == meta["prompt_tokens"] + COMPLETION_TOKENS
            assert meta["purpose"] == f"page_{page}_analysis" and meta["model"] == "sim"
            assert result.json()["response"]["role"] == "assistant"
            expected += cost
            latencies.append(meta["latency_ms"])
        summary_messages = [{"role": "user", "content": "Summarize all the analyzed pages..."}]
        final = api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": summary_messages,
                                                                 "purpose": "final_summary"})
        assert final.status_code == 200, final.text
        expected += call_cost(summary_messages)
        done = api.post(f"/api/jobs/{job_id}/complete", json={
            "status": "completed", "metadata": {"output_file": "summary_12345.pdf"}})
        assert done.status_code == 200, done.text
    costs = done.json()["costs"]
    assert done.json()["status"] == "completed"
    assert costs["total_calls"] == 6
    assert costs["total_tokens"] == sum(chat_prompt_tokens(m) for m in [
        *map(page_messages, range(1, 6)), summary_messages]) + 6 * COMPLETION_TOKENS
    assert Decimal(costs["total_cost_usd"]) == usd(expected)
    assert costs["customer_price_usd"] == "0.5"
    assert Decimal(costs["margin_usd"]) == Decimal("0.50") - usd(expected)
    assert isinstance(costs["avg_latency_ms"], int)


def test_example_2_a_chat_session_sends_the_growing_conversation_and_costs_what_each_turn_metered(
        world: JobsWorld) -> None:
    with world.client("startup-xyz") as api:
        job_id = api.post("/api/jobs/create", json={
            "team_id": "startup-xyz", "user_id": "alice@startup.com", "job_type": "chat_session",
            "metadata": {"session_id": "chat_567", "topic": "customer_support"}}).json()["job_id"]
        conversation = [{"role": "system", "content": "You are a helpful assistant."}]
        expected = 0
        for question in ("How do I reset my password?", "What are your business hours?",
                         "Can I get a refund?"):
            conversation.append({"role": "user", "content": question})
            result = api.post(f"/api/jobs/{job_id}/llm-call", json={
                "messages": conversation, "purpose": "chat_turn", "temperature": 0.7})
            assert result.status_code == 200, result.text
            answer = result.json()["response"]["content"]
            assert isinstance(answer, str) and answer
            expected += call_cost(conversation)
            conversation.append({"role": "assistant", "content": answer})
        done = api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"})
    assert done.status_code == 200, done.text
    assert Decimal(done.json()["costs"]["total_cost_usd"]) == usd(expected)
    assert done.json()["costs"]["total_calls"] == 3
    assert "customer_price_usd" not in done.json()["costs"]  # startup-xyz has no pricing


def test_example_3_a_failed_call_is_an_error_and_the_job_is_marked_failed_with_its_reason(
        world: JobsWorld) -> None:
    with world.client("beta-testing") as api:
        job_id = api.post("/api/jobs/create", json={
            "team_id": "beta-testing", "user_id": "test@example.com",
            "job_type": "data_extraction"}).json()["job_id"]
        failed = api.post(f"/api/jobs/{job_id}/llm-call", json={
            "messages": [{"role": "user", "content": "Extract data..."}], "model": "sim-error"})
        assert failed.status_code == 502, failed.text
        assert "sim-error" in failed.json()["error"]["message"]
        done = api.post(f"/api/jobs/{job_id}/complete", json={
            "status": "failed", "error_message": f"{failed.status_code} Server Error",
            "metadata": {"failed_at_step": "extraction"}})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "failed"
        assert done.json()["costs"]["total_cost_usd"] == "0"  # a failed upstream call is free
        again = api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"})
        assert again.status_code == 409, again.text
        late = api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": [{"role": "user",
                                                                              "content": "x"}]})
        assert late.status_code == 409 and late.json()["error"]["code"] == "job_not_running"


def test_example_4_team_usage_counts_the_month_s_jobs_by_outcome_and_type_to_the_nano_dollar(
        world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        ids = []
        for job_type, outcome in (("document_analysis", "completed"), ("chat_session", "completed"),
                                  ("chat_session", "failed")):
            job_id = api.post("/api/jobs/create", json={"team_id": "acme-corp", "user_id": "u@acme.com",
                                                        "job_type": job_type}).json()["job_id"]
            api.post(f"/api/jobs/{job_id}/llm-call", json={
                "messages": [{"role": "user", "content": job_type}]}).raise_for_status()
            api.post(f"/api/jobs/{job_id}/complete", json={"status": outcome}).raise_for_status()
            ids.append(job_id)
        period = datetime.now(UTC).strftime("%Y-%m")
        usage = api.get("/api/teams/acme-corp/usage", params={"period": period})
        assert usage.status_code == 200, usage.text
        listed = api.get("/api/teams/acme-corp/jobs").json()["data"]
    body = usage.json()
    assert body["team_id"] == "acme-corp" and body["period"] == period
    costs = {j["job_id"]: Decimal(j["total_cost_usd"]) for j in listed}
    summary = body["summary"]
    assert summary["total_jobs"] == len(listed)
    assert summary["successful_jobs"] == sum(j["status"] == "completed" for j in listed)
    assert summary["failed_jobs"] == sum(j["status"] == "failed" for j in listed) >= 1
    assert Decimal(summary["total_cost_usd"]) == sum(costs.values())
    total = sum(costs.values())
    assert Decimal(summary["avg_cost_per_job"]) == (total / len(listed)).quantize(NANO)
    chat = [j for j in listed if j["job_type"] == "chat_session"]
    assert body["job_types"]["chat_session"]["count"] == len(chat)
    assert Decimal(body["job_types"]["chat_session"]["cost_usd"]) == sum(
        Decimal(j["total_cost_usd"]) for j in chat)
    assert set(ids) <= set(costs)


def test_example_5_the_cost_breakdown_lists_each_call_with_model_purpose_tokens_and_cost(
        world: JobsWorld) -> None:
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"team_id": "acme-corp", "user_id": "j@acme.com",
                                                    "job_type": "document_analysis"}).json()["job_id"]
        made = [api.post(f"/api/jobs/{job_id}/llm-call", json={
            "messages": page_messages(n), "purpose": f"page_{n}_analysis"}).json()["metadata"]
            for n in (1, 2)]
        api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"}).raise_for_status()
        data = api.get(f"/api/jobs/{job_id}/costs").json()
    assert data["job_id"] == job_id and data["team_id"] == "acme-corp"
    breakdown = data["costs"]["breakdown"]
    assert [c["call_id"] for c in breakdown] == [m["call_id"] for m in made]
    for call, meta in zip(breakdown, made, strict=True):
        assert call["model"] == "sim" and call["purpose"] == meta["purpose"]
        assert (call["prompt_tokens"], call["completion_tokens"], call["cost_usd"], call["latency_ms"]) == (
            meta["prompt_tokens"], meta["completion_tokens"], meta["cost_usd"], meta["latency_ms"])
    assert Decimal(data["costs"]["total_cost_usd"]) == sum(Decimal(c["cost_usd"]) for c in breakdown)
    assert data["costs"]["customer_price_usd"] == "0.5"
