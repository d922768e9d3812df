"""The chargeback report API (issue 14) against polars over the raw facts, in every format.

`ChargebackChecks` runs on the in-memory twin and on embedded chDB (whose daily rollup in the
billing time zone answers a month): the report must equal the sum of the raw facts to the
nano-dollar, whichever store answers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pypdf
import pytest

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from tests.support.admin_analytics import BILLING_TZ, App, analytics_app
from tests.support.gateway import ADMIN_TOKEN

MARCH_PARIS = (datetime(2024, 2, 29, 23, tzinfo=UTC), datetime(2024, 3, 31, 22, tzinfo=UTC))
Q1_PARIS = (datetime(2023, 12, 31, 23, tzinfo=UTC), datetime(2024, 3, 31, 22, tzinfo=UTC))
COST_CENTRES = {"red": "CC-100", "blue": "CC-200"}
ID_COLUMN = {"user": "user_id", "key": "key_id", "team": "team_id", "model": "model",
             "application": "application", "cost_center": "cost_center"}


def expected(frame: pl.DataFrame, start: datetime, end: datetime, group_by: str) -> dict[str, tuple]:
    """(requests, input, output, cost in nano-dollars) per group, summed straight from the facts."""
    column = {"cost_center": "team_id"}.get(group_by, ID_COLUMN[group_by])
    within = frame.filter((pl.col("at") >= start) & (pl.col("at") < end))
    if group_by == "cost_center":
        within = within.with_columns(pl.col("team_id").replace_strict(COST_CENTRES, default=""))
    sums = within.group_by(column).agg(pl.col("requests").sum(), pl.col("prompt").sum(),
                                       pl.col("completion").sum(), pl.col("cost").sum())
    return {row[0]: tuple(row[1:]) for row in sums.iter_rows()}


def nanos(text: str) -> int:
    return int(Decimal(text) * 1_000_000_000)


class ChargebackChecks:
    @classmethod
    def open_store(cls, directory):  # pragma: no cover - each subclass says
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def app(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
        directory = tmp_path_factory.mktemp("chargeback")
        with analytics_app(directory / "system", cls.open_store(directory / "store")) as running:
            for team, centre in COST_CENTRES.items():
                running.admin.post("/api/admin/teams", json={"team_id": team, "name": f"Team {team}",
                                                             "cost_center": centre}).raise_for_status()
            yield running

    @staticmethod
    def report(app: App, token: str = ADMIN_TOKEN, **params):
        return app.admin.get("/api/admin/reports/chargeback", params=params,
                             headers={"authorization": f"Bearer {token}"})

    @pytest.mark.parametrize("group_by", list(ID_COLUMN))
    def test_every_group_sums_the_facts_of_the_month_to_the_nano_dollar(self, app, group_by):
        body = self.report(app, period="2024-03", group_by=group_by).json()
        assert (body["period"], body["timezone"], body["currency"]) == ("2024-03", BILLING_TZ, "USD")
        column = ID_COLUMN[group_by]
        got = {row[column]: (row["requests"], row["input_tokens"], row["output_tokens"],
                             nanos(row["cost_usd"])) for row in body["rows"]}
        want = expected(app.frame, *MARCH_PARIS, group_by)
        assert got == {group: sums for group, sums in want.items() if sums[0] or sums[3]}
        totals = body["totals"]
        assert nanos(totals["cost_usd"]) == sum(s[3] for s in want.values()) > 0
        assert totals["requests"] == sum(s[0] for s in want.values())
        assert sum(Decimal(row["share_percent"]) for row in body["rows"]) == Decimal("100.00")
        costs = [nanos(row["cost_usd"]) for row in body["rows"]]
        assert costs == sorted(costs, reverse=True)  # most expensive first

    def test_keys_and_teams_carry_their_names_and_cost_centres_their_teams_sums(self, app):
        keys = {row["key_id"]: row["name"] for row in
                self.report(app, period="2024-03", group_by="key").json()["rows"]}
        for user_keys in app.keys.values():
            for key in user_keys:
                assert keys.get(key["id"], key["name"]) == key["name"]
        teams = {row["team_id"]: row["name"] for row in
                 self.report(app, period="2024-03", group_by="team").json()["rows"]}
        assert teams["red"] == "Team red" and teams[""] == "(no team)"

    def test_a_quarter_and_a_range_of_days_are_reported_in_the_billing_zone(self, app):
        quarter = self.report(app, period="2024-q1", group_by="model").json()
        assert quarter["period"] == "2024-Q1"
        assert quarter["from"] == Q1_PARIS[0].isoformat() and quarter["to"] == Q1_PARIS[1].isoformat()
        want = expected(app.frame, *Q1_PARIS, "model")
        assert nanos(quarter["totals"]["cost_usd"]) == sum(s[3] for s in want.values())
        days = self.report(app, period="2024-03-01..2024-03-31", group_by="model").json()
        month = self.report(app, period="2024-03", group_by="model").json()
        assert {row.pop("usage_period") for row in days["rows"]} == {"2024-03-01..2024-03-31"}
        assert {row.pop("usage_period") for row in month["rows"]} == {"2024-03"}
        assert days["rows"] == month["rows"] and days["totals"] == month["totals"]

    def test_csv_parquet_and_xlsx_read_back_to_the_json_figures(self, app):
        body = self.report(app, period="2024-03", group_by="user").json()
        want = {row["user_id"]: nanos(row["cost_usd"]) for row in body["rows"]}
        want["TOTAL"] = nanos(body["totals"]["cost_usd"])
        as_csv = self.report(app, period="2024-03", group_by="user", format="csv")
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert 'filename="chargeback-2024-03-by-user.csv"' in as_csv.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert {row["user_id"]: nanos(row["cost_usd"]) for row in rows} == want
        parquet = pl.read_parquet(io.BytesIO(self.report(app, period="2024-03", format="parquet").content))
        assert parquet.schema["cost_usd"] == pl.Decimal(38, 9)
        pairs = parquet.select("user_id", "cost_usd").iter_rows()
        assert {user: int(cost * 1_000_000_000) for user, cost in pairs} == want
        xlsx = pl.read_excel(io.BytesIO(self.report(app, period="2024-03", format="xlsx").content),
                             read_options={"header_row": 2})
        assert xlsx["user_id"].to_list() == list(want)
        requests = [row["requests"] for row in body["rows"]] + [body["totals"]["requests"]]
        assert xlsx["requests"].to_list() == requests

    def test_the_pdf_has_a_title_the_period_and_the_total(self, app):
        pdf = self.report(app, period="2024-03", group_by="team", format="pdf")
        assert pdf.headers["content-type"] == "application/pdf"
        text = pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
        total = self.report(app, period="2024-03", group_by="team").json()["totals"]["cost_usd"]
        assert "Chargeback by team" in text and "2024-03-01 to 2024-03-31" in text
        assert f"Total {total} USD" in text and "Team red" in text

    @pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "xlsx", "pdf"])
    def test_the_same_period_gives_the_same_bytes(self, app, fmt):
        first = self.report(app, period="2024-03", group_by="team", format=fmt).content
        assert self.report(app, period="2024-03", group_by="team", format=fmt).content == first

    @pytest.mark.parametrize("period", ["2024-13", "2024-Q5", "March", "2024-03-31..2024-03-01", "0000-01",
                                        "2024-02-30..2024-03-01", "1" * 41, "2024-03-01..2099-01-01"])
    def test_a_period_it_cannot_read_is_a_400_that_says_what_to_send(self, app, period):
        response = self.report(app, period=period)
        assert response.status_code in (400, 422), response.text
        assert "period" in response.text

    def test_users_get_403_and_an_unknown_format_or_group_a_clear_error(self, app):
        user = self.report(app, token=app.user_tokens["ana"], period="2024-03")
        assert user.status_code == 403
        for params in ({"format": "docx"}, {"group_by": "planet"}):
            response = self.report(app, period="2024-03", **params)
            assert 400 <= response.status_code < 500 and "Traceback" not in response.text


class TestOnTheInMemoryStore(ChargebackChecks):
    @classmethod
    def open_store(cls, directory):
        return InMemoryAnalytics()


class TestOnChdb(ChargebackChecks):
    @classmethod
    def open_store(cls, directory):
        return ChdbAnalytics(directory, rollup_timezone=BILLING_TZ)
