"""Month close (issue 14): sealed exports that never change, late usage booked forward, closes in order.

Runs on embedded chDB, as production does: a closed month's files must survive later traffic,
price and name changes, and a full rebuild of the analytics store, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from adapters.analytics.chdb import ChdbAnalytics
from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from domain.usage import RequestMetered
from infra.config.env_settings import Settings
from infra.container import build
from infra.runner import gateway_app
from tests.support.admin_analytics import BILLING_TZ, _register, traffic
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET, sim_config

FORMATS = ("json", "csv", "parquet", "xlsx", "pdf", "focus", "focus-parquet")
EXTENSIONS = {"json": "json", "focus": "focus.csv", "focus-parquet": "focus.parquet"}
GROUPS = ("user", "key", "team", "cost_center", "model", "application")
FEB_END = datetime(2024, 2, 29, 23, tzinfo=UTC)  # Paris's March 1st


@dataclass
class Books:
    client: TestClient
    clock: FixedClock
    store: ChdbAnalytics
    facts: list[RequestMetered]
    user_tokens: dict[str, str]

    def close(self, month: str, token: str = ADMIN_TOKEN):
        return self.client.post(f"/api/admin/periods/{month}/close",
                                headers={"authorization": f"Bearer {token}"})

    def report(self, period: str, group_by: str = "user", fmt: str = "json"):
        response = self.client.get("/api/admin/reports/chargeback",
                                   params={"period": period, "group_by": group_by, "format": fmt})
        assert response.status_code == 200, response.text
        return response

    def late(self, at: datetime, user: str, cost: int, team: str = "red") -> RequestMetered:
        """A fact of `at` that reaches analytics now (a replayed batch, a gateway's skewed clock)."""
        fact = self.facts[0]._replace(event_id=str(uuid.uuid4()), occurred_at=at, user_id=user, team_id=team,
                                   cost=cost, requests=1, final=True, request_id="")
        self.store.insert_usage([fact], batch_id=f"late-{fact.event_id}")
        return fact


@contextmanager
def books(data_dir: Path) -> Iterator[Books]:
    clock = FixedClock(datetime(2024, 3, 20, 10, tzinfo=UTC))
    store = ChdbAnalytics(data_dir / "analytics", rollup_timezone=BILLING_TZ)
    settings = Settings(data_dir=data_dir / "system", dev=True, admin_token=ADMIN_TOKEN,
                        key_secret=KEY_SECRET, gateway_id="gw-close", billing_timezone=BILLING_TZ)
    system = build(settings, sim_config("http://127.0.0.1:9/v1"), clock=clock, analytics=store,
                   bus=InProcessBus(partitions=1))
    try:
        with TestClient(gateway_app(system, frozenset({"gateway"}))) as client:
            client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            tokens, keys = _register(client)
            for team in ("red", "blue"):
                client.post("/api/admin/teams", json={"team_id": team, "name": f"Team {team}",
                                                      "cost_center": f"CC-{team}"}).raise_for_status()
            facts = traffic(keys)
            store.insert_usage(facts, batch_id="traffic")
            yield Books(client, clock, store, facts, tokens)
    finally:
        system.close()


@pytest.fixture
def ledger_books(tmp_path) -> Iterator[Books]:
    with books(tmp_path) as running:
        yield running


def sealed_files(b: Books, month: str) -> dict[str, bytes]:
    return {f"{g}.{f}": b.report(month, g, f).content for g in GROUPS for f in FORMATS}


def nanos(text: str) -> int:
    return int(Decimal(text) * 1_000_000_000)


def test_a_closed_month_serves_the_files_its_manifest_names_byte_for_byte(ledger_books):
    b = ledger_books
    live = b.report("2024-02", "team", "csv")
    assert live.headers["x-meterline-sealed"] == "false"
    closed = b.close("2024-02")
    assert closed.status_code == 201, closed.text
    manifest = closed.json()
    assert manifest["closed_by"].startswith("admin:")  # the admin token's audit actor (its prefix)
    assert len(manifest["exports"]) == len(GROUPS) * len(FORMATS)
    for group_by in GROUPS:
        for fmt in FORMATS:
            response = b.report("2024-02", group_by, fmt)
            assert response.headers["x-meterline-sealed"] == "true"
            name = f"chargeback-by-{group_by}.{EXTENSIONS.get(fmt, fmt)}"
            assert hashlib.sha256(response.content).hexdigest() == manifest["exports"][name]["sha256"]
    assert b.report("2024-02", "team", "csv").content == live.content  # sealing changed nothing
    assert b.client.get("/api/admin/periods/2024-02").json() == manifest


def test_sealed_files_survive_late_usage_price_and_name_changes_and_a_full_rebuild(ledger_books):
    b = ledger_books
    assert b.close("2024-02").status_code == 201
    before = sealed_files(b, "2024-02")
    b.late(FEB_END - timedelta(hours=3), "ana", cost=7_000_000_001)
    b.client.post("/api/admin/teams", json={"team_id": "red", "name": "Team Crimson",
                                            "cost_center": "CC-999"}).raise_for_status()
    b.client.put("/api/admin/models/sim/price", json={"input_per_million": "9", "output_per_million": "9"})
    b.store.delete_since(None)  # a full rebuild: everything re-inserted, in other batches
    b.store.insert_usage(b.facts[::2], batch_id="rebuild-1")
    b.store.insert_usage(b.facts[1::2], batch_id="rebuild-2")
    assert sealed_files(b, "2024-02") == before


def test_usage_that_reaches_a_closed_month_late_is_booked_once_in_the_next_open_month(ledger_books):
    b = ledger_books
    assert b.close("2024-02").status_code == 201
    march_before = b.report("2024-03").json()
    b.late(FEB_END - timedelta(minutes=5), "ana", cost=1_000_000_007)
    b.late(FEB_END - timedelta(days=3), "cleo", cost=5)
    march = b.report("2024-03").json()
    late = [row for row in march["rows"] if row["usage_period"] == "2024-02"]
    assert {(row["user_id"], nanos(row["cost_usd"]), row["requests"]) for row in late} == {
        ("ana", 1_000_000_007, 1), ("cleo", 5, 1)}
    assert nanos(march["totals"]["cost_usd"]) == nanos(march_before["totals"]["cost_usd"]) + 1_000_000_012
    assert sum(Decimal(row["share_percent"]) for row in march["rows"]) == Decimal("100.00")
    teams = b.report("2024-03", "cost_center").json()["rows"]
    assert any(row["cost_center"] == "CC-red" and row["usage_period"] == "2024-02" for row in teams)
    # March closes with those adjustments; a later late fact of February goes to April, alone
    b.clock.set(datetime(2024, 4, 2, tzinfo=UTC))
    assert b.close("2024-03").status_code == 201
    sealed_march = b.report("2024-03").json()
    assert [r for r in sealed_march["rows"] if r["usage_period"] == "2024-02"] == late
    b.late(FEB_END - timedelta(minutes=1), "ana", cost=3)
    april = b.report("2024-04").json()
    assert [(r["user_id"], r["usage_period"], nanos(r["cost_usd"])) for r in april["rows"]
            if r["usage_period"] != "2024-04"] == [("ana", "2024-02", 3)]


def test_every_nano_dollar_is_in_exactly_one_month_across_closes_and_adjustments(ledger_books):
    b = ledger_books
    b.clock.set(datetime(2024, 5, 2, tzinfo=UTC))
    for month in ("2024-02", "2024-03"):
        assert b.close(month).status_code == 201
    extra = [b.late(FEB_END - timedelta(hours=1), "ben", 11),
             b.late(datetime(2024, 3, 5, tzinfo=UTC), "ana", 13)]
    months = ["2024-02", "2024-03", "2024-04"]
    reported = sum(nanos(b.report(m).json()["totals"]["cost_usd"]) for m in months)
    start, end = datetime(2024, 1, 31, 23, tzinfo=UTC), datetime(2024, 4, 30, 22, tzinfo=UTC)
    assert reported == sum(f.cost for f in [*b.facts, *extra] if start <= f.occurred_at < end)


def test_a_month_closes_once_in_order_after_it_ends_and_only_for_admins(ledger_books):
    b = ledger_books
    assert b.close("2024-03").status_code == 400 and "has not ended" in b.close("2024-03").text
    assert b.close("2024-02", token=b.user_tokens["ana"]).status_code == 403
    assert b.close("2024-02").status_code == 201
    again = b.close("2024-02")
    assert again.status_code == 409 and "already closed" in again.text
    earlier = b.close("2024-01")
    assert earlier.status_code == 400 and "in order" in earlier.text
    for bad in ("2024-13", "24-02", "2024-02-01", "..", "%00"):
        response = b.close(bad)
        assert 400 <= response.status_code < 500 and "Traceback" not in response.text
    assert b.client.get("/api/admin/periods/2023-11").status_code == 404
    listing = b.client.get("/api/admin/periods").json()
    assert [c["month"] for c in listing["closed"]] == ["2024-02"] and listing["receiving_month"] == "2024-03"


def test_the_manifest_names_the_price_versions_in_force_and_the_totals(ledger_books):
    b = ledger_books  # the configured prices took effect when the system started, on March 20th
    b.clock.set(datetime(2024, 4, 2, tzinfo=UTC))
    assert b.close("2024-02").json()["price_versions"] == {}
    manifest = b.close("2024-03").json()
    assert manifest["price_versions"] == {"sim": [1], "sim-embed": [1]}
    body = b.report("2024-03").json()
    assert manifest["cost_usd"] == body["totals"]["cost_usd"].rstrip("0").rstrip(".") or "0"
    assert manifest["requests"] == body["totals"]["requests"]
    json.dumps(manifest)  # plain JSON throughout
