"""Customer pricing through the API: admins set it per team and job type, a job is priced once
when it completes (a later change does not re-price it), and completion, costs and team usage
report customer_price_usd and margin_usd exactly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from tests.support.jobs_api import JobsWorld, call_cost, jobs_world

MESSAGES = [{"role": "user", "content": "price me"}]
PRICING = {"job_types": {
    "document_analysis": {"strategy": "flat", "price_usd": "0.50"},
    "chat_session": {"strategy": "tiered", "tiers": [{"below_tokens": 1000, "price_usd": "0.05"},
                                                     {"below_tokens": 5000, "price_usd": "0.15"},
                                                     {"price_usd": "0.30"}]}},
    "default": {"strategy": "markup", "factor": "2.0"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsWorld]:
    with jobs_world(tmp_path_factory.mktemp("jobs-pricing"), teams=("acme-corp", "rival")) as built:
        yield built


def run_job(world: JobsWorld, job_type: str, calls: int = 1) -> dict:
    with world.client("acme-corp") as api:
        job_id = api.post("/api/jobs/create", json={"job_type": job_type}).json()["job_id"]
        for _ in range(calls):
            api.post(f"/api/jobs/{job_id}/llm-call", json={"messages": MESSAGES}).raise_for_status()
        done = api.post(f"/api/jobs/{job_id}/complete", json={"status": "completed"})
        assert done.status_code == 200, done.text
        return done.json()


def test_each_strategy_prices_a_job_and_its_margin_is_price_minus_cost(world: JobsWorld) -> None:
    with world.client() as admin:
        put = admin.put("/api/admin/teams/acme-corp/pricing", json=PRICING)
        assert put.status_code == 200, put.text
        assert put.json()["job_types"]["document_analysis"] == {"strategy": "flat", "price_usd": "0.5"}
        assert admin.get("/api/admin/teams/acme-corp/pricing").json() == put.json()
    cost = Decimal(call_cost(MESSAGES)) / 10**9
    flat = run_job(world, "document_analysis", 2)["costs"]
    assert (Decimal(flat["customer_price_usd"]), Decimal(flat["margin_usd"])) == (
        Decimal("0.5"), Decimal("0.5") - 2 * cost)
    tiered = run_job(world, "chat_session")["costs"]
    assert Decimal(tiered["customer_price_usd"]) == Decimal("0.05")  # under 1000 tokens
    markup = run_job(world, "anything_else", 3)["costs"]
    assert Decimal(markup["customer_price_usd"]) == (3 * cost * 2).quantize(
        Decimal("1e-9"), rounding=ROUND_HALF_EVEN)
    assert Decimal(markup["margin_usd"]) == 3 * cost


def test_a_pricing_change_does_not_reprice_a_completed_job_and_usage_sums_the_priced_ones(
        world: JobsWorld) -> None:
    before = run_job(world, "document_analysis")
    with world.client() as admin:
        admin.put("/api/admin/teams/acme-corp/pricing", json={"job_types": {
            "document_analysis": {"strategy": "flat", "price_usd": "0.75"}}}).raise_for_status()
    after = run_job(world, "document_analysis")
    with world.client("acme-corp") as api:
        kept = api.get(f"/api/jobs/{before['job_id']}/costs").json()["costs"]
        usage = api.get("/api/teams/acme-corp/usage",
                        params={"period": datetime.now(UTC).strftime("%Y-%m")}).json()
        listed = api.get("/api/teams/acme-corp/jobs", params={"limit": 500}).json()["data"]
    assert kept["customer_price_usd"] == "0.5"
    assert after["costs"]["customer_price_usd"] == "0.75"
    priced = [j for j in listed if j["customer_price_usd"] is not None]
    price = sum(Decimal(j["customer_price_usd"]) for j in priced)
    assert Decimal(usage["summary"]["customer_price_usd"]) == price
    cost = sum(Decimal(j["total_cost_usd"]) for j in priced)
    assert Decimal(usage["summary"]["margin_usd"]) == price - cost


@pytest.mark.parametrize("body", [
    {"job_types": {"doc": {"strategy": "flat"}}},
    {"job_types": {"doc": {"strategy": "flat", "price_usd": 0.5}}},
    {"job_types": ["doc"]}, {"job_types": {"a b": {"strategy": "flat", "price_usd": "1"}}},
    {"default": {"strategy": "markup", "factor": "lots"}}, {"surprise": True},
    {"job_types": {"doc": {"strategy": "tiered", "tiers": [{"below_tokens": 5, "price_usd": "1"}]}}},
])
def test_a_bad_pricing_body_is_a_400_naming_the_problem(world: JobsWorld, body: dict) -> None:
    with world.client() as admin:
        answer = admin.put("/api/admin/teams/acme-corp/pricing", json=body)
    assert answer.status_code == 400, answer.text


def test_only_admins_set_pricing_and_an_unknown_team_is_404(world: JobsWorld) -> None:
    with world.client(token=world.user_tokens["acme-corp"]) as user:
        assert user.put("/api/admin/teams/acme-corp/pricing", json=PRICING).status_code == 403
    with world.client() as admin:
        assert admin.put("/api/admin/teams/nobody/pricing", json=PRICING).status_code == 404
