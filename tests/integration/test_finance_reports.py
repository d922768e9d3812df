"""FOCUS exports, re-rating and model economics (issue 14) against polars over the raw facts.

Each check runs on the in-memory twin and on embedded chDB; the reference figures are worked
out here from the facts, never through the code under test.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import polars as pl
import pytest
from starlette.testclient import TestClient

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from domain.money import divide_rounded
from infra.config.env_settings import Settings
from infra.config.toml_file import parse_config
from infra.container import build
from infra.runner import gateway_app
from tests.support.admin_analytics import BILLING_TZ, App, _register, analytics_app, frame, traffic
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET

MARCH = (datetime(2024, 2, 29, 23, tzinfo=UTC), datetime(2024, 3, 31, 22, tzinfo=UTC))
FOCUS_MANDATORY = (
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodStart",
    "BillingPeriodEnd", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargePeriodStart",
    "ChargePeriodEnd", "ContractedCost", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "ServiceCategory", "ServiceName")


def nanos(text: str) -> int:
    return int(Decimal(text) * 1_000_000_000)


def march_facts(app: App) -> pl.DataFrame:
    return app.frame.filter((pl.col("at") >= MARCH[0]) & (pl.col("at") < MARCH[1]))


class FinanceChecks:
    @classmethod
    def open_store(cls, directory):  # pragma: no cover - each subclass says
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def app(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
        directory = tmp_path_factory.mktemp("finance")
        with analytics_app(directory / "system", cls.open_store(directory / "store")) as running:
            yield running

    @staticmethod
    def get(app: App, path: str, **params):
        return app.admin.get(f"/api/admin/reports/{path}", params=params)

    def test_focus_has_the_mandatory_columns_typed_one_row_per_user_and_day_summing_to_the_total(self, app):
        parquet = pl.read_parquet(io.BytesIO(self.get(app, "chargeback", period="2024-03",
                                                      format="focus-parquet").content))
        assert set(FOCUS_MANDATORY) <= set(parquet.columns)
        assert parquet.schema["BilledCost"] == pl.Decimal(38, 9)
        assert parquet.schema["ChargePeriodStart"] == pl.Datetime("us", "UTC")
        assert set(parquet["BillingCurrency"]) == {"USD"} and set(parquet["ChargeCategory"]) == {"Usage"}
        users = [json.loads(tags)["meterline/user"] for tags in parquet["Tags"]]
        days = [start.astimezone().date() for start in parquet["ChargePeriodStart"]]
        assert len(set(zip(users, parquet["ChargePeriodStart"], strict=True))) == parquet.height == len(days)
        facts = march_facts(app).with_columns(
            pl.col("at").dt.convert_time_zone(BILLING_TZ).dt.date().alias("day"))
        assert parquet.height == facts.filter((pl.col("requests") > 0) | (pl.col("cost") > 0)
                                              ).select("user_id", "day").unique().height
        total = self.get(app, "chargeback", period="2024-03").json()["totals"]["cost_usd"]
        assert sum(parquet["BilledCost"].to_list()) == Decimal(total)
        focus_csv = self.get(app, "chargeback", period="2024-03", format="focus").text
        rows = list(csv.DictReader(io.StringIO(focus_csv)))
        assert len(rows) == parquet.height and sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(total)
        assert rows[0]["ChargePeriodStart"].endswith("Z")

    @pytest.mark.parametrize("per_1k", ["0.01", "0.10"])
    def test_the_seeds_flat_price_per_1k_tokens_rerates_every_user_and_model_line_exactly(self, app, per_1k):
        body = self.get(app, "rerate", period="2024-03", price_book=f"flat:{per_1k}/1k").json()
        per_million = int(Decimal(per_1k) * 1000 * 1_000_000_000)
        lines = march_facts(app).group_by("user_id", "model").agg(
            pl.col("prompt").sum(), pl.col("completion").sum(), pl.col("cost").sum())
        want: dict[str, list[int]] = {}
        for user, _, prompt, completion, cost in lines.iter_rows():
            rerated = divide_rounded((prompt + completion) * per_million, 1_000_000)
            want.setdefault(user, [0, 0])
            want[user][0] += cost
            want[user][1] += rerated
        got = {r["user_id"]: [nanos(r["actual_cost_usd"]), nanos(r["rerated_cost_usd"])]
               for r in body["rows"]}
        assert got == {u: v for u, v in want.items() if v[0] or v[1]}
        for row in body["rows"]:
            difference = nanos(row["rerated_cost_usd"]) - nanos(row["actual_cost_usd"])
            assert nanos(row["difference_usd"]) == difference
        assert nanos(body["totals"]["rerated_cost_usd"]) == sum(v[1] for v in want.values())
        assert body["models_kept_at_actual_cost"] == []

    def test_a_per_model_price_book_keeps_the_actual_cost_of_models_it_does_not_name(self, app):
        body = self.get(app, "rerate", period="2024-03", group_by="model",
                        price_book="m-small=1.00/2.00/0.5").json()
        assert body["models_kept_at_actual_cost"] == ["m-embed", "m-large"]
        rows = {r["model"]: r for r in body["rows"]}
        assert rows["m-large"]["rerated_cost_usd"] == rows["m-large"]["actual_cost_usd"]
        small = march_facts(app).filter(pl.col("model") == "m-small")
        prompt, completion = small["prompt"].sum(), small["completion"].sum()
        want = divide_rounded(prompt * 1_000_000_000 + completion * 2_000_000_000, 1_000_000)
        assert nanos(rows["m-small"]["rerated_cost_usd"]) == want

    def test_rerating_gives_the_same_bytes_each_time_and_csv_has_a_totals_row(self, app):
        params = {"period": "2024-03", "group_by": "team", "price_book": "flat:0.5/1m", "format": "csv"}
        first = self.get(app, "rerate", **params)
        assert first.content == self.get(app, "rerate", **params).content
        assert first.text.splitlines()[-1].startswith("TOTAL,")

    @pytest.mark.parametrize("book, message", [
        ("flat:abc/1k", "not understood"), ("flat:0.0000000001/1m", "9 decimals"),
        ("v7", "no price version 7"), ("at:yesterday", "ISO instant"), ("=1/2", "not understood"),
        ("a=1/2;a=3/4", "twice"), ("", "empty")])
    def test_a_price_book_it_cannot_apply_is_a_400_that_says_what_to_write(self, app, book, message):
        response = self.get(app, "rerate", period="2024-03", price_book=book)
        assert response.status_code in (400, 422) and message in response.text, response.text

    def test_economics_without_a_gpu_cost_report_revenue_and_unknown_margin(self, app):
        body = self.get(app, "economics", period="2024-03").json()
        facts = march_facts(app)
        for row in body["models"]:
            model = facts.filter(pl.col("model") == row["model"])
            assert nanos(row["revenue_usd"]) == model["cost"].sum()
            assert row["requests"] == model["requests"].sum()
            assert row["gpu_cost_usd"] is None and row["margin_usd"] is None

    def test_serving_hours_are_latencies_per_hour_over_concurrency_capped_at_the_hour(self, app):
        body = self.get(app, "economics", period="2024-03", concurrency=4).json()
        facts = march_facts(app).filter(pl.col("final")).with_columns(hour=pl.col("at").dt.truncate("1h"))
        for row in body["models"]:
            of_model = facts.filter(pl.col("model") == row["model"])
            hours = of_model.group_by("hour").agg(pl.col("latency").sum())["latency"]
            exact = sum((min(Fraction(ms, 4 * 3_600_000), Fraction(1)) for ms in hours), Fraction(0))
            assert Decimal(row["serving_hours"]) == Decimal(round(exact * 10**9)) / 10**9


class TestOnTheInMemoryStore(FinanceChecks):
    @classmethod
    def open_store(cls, directory):
        return InMemoryAnalytics()


class TestOnChdb(FinanceChecks):
    @classmethod
    def open_store(cls, directory):
        return ChdbAnalytics(directory, rollup_timezone=BILLING_TZ)



ECONOMICS_TOML = "".join(f"""
[[models]]
name = "{model}"
upstream_url = "http://127.0.0.1:9/v1"
input_price_per_million = "1.00"
output_price_per_million = "2.00"
gpu_cost_per_hour = "{gpu}"
""" for model, gpu in (("m-small", "2.00"), ("m-large", "8.000000001"), ("sim", "1")))


def test_gpu_cost_is_the_hourly_rate_times_serving_hours_and_the_margin_what_is_left(tmp_path):
    clock = FixedClock(datetime(2024, 2, 1, tzinfo=UTC))  # the prices apply from here on
    settings = Settings(data_dir=tmp_path, dev=True, admin_token=ADMIN_TOKEN, key_secret=KEY_SECRET,
                        billing_timezone=BILLING_TZ)
    system = build(settings, parse_config(ECONOMICS_TOML, source="<economics>"), clock=clock,
                   analytics=InMemoryAnalytics(), bus=InProcessBus(partitions=1))
    try:
        with TestClient(gateway_app(system, frozenset({"gateway"}))) as client:
            client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            _, keys = _register(client)
            facts = traffic(keys)
            system.analytics.insert_usage(facts, batch_id="traffic")
            body = client.get("/api/admin/reports/economics", params={"period": "2024-03"}).json()
    finally:
        system.close()
    march = frame(facts).filter((pl.col("at") >= MARCH[0]) & (pl.col("at") < MARCH[1]))
    rows = {row["model"]: row for row in body["models"]}
    for model, rate in (("m-small", 2_000_000_000), ("m-large", 8_000_000_001)):
        finished = march.filter(pl.col("final") & (pl.col("model") == model))
        per_hour = finished.group_by(pl.col("at").dt.truncate("1h")).agg(pl.col("latency").sum())["latency"]
        exact = sum((min(Fraction(ms, 3_600_000), Fraction(1)) * rate for ms in per_hour), Fraction(0))
        gpu = divide_rounded(exact.numerator, exact.denominator)
        revenue = march.filter(pl.col("model") == model)["cost"].sum()
        assert nanos(rows[model]["gpu_cost_usd"]) == gpu > 0
        assert nanos(rows[model]["margin_usd"]) == revenue - gpu
        margin = (Decimal((revenue - gpu) * 100) / revenue).quantize(Decimal("0.01"))
        assert Decimal(rows[model]["margin_percent"]) == margin
    assert rows["m-embed"]["gpu_cost_usd"] is None
