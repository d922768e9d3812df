"""The finance surfaces against a hostile admin input and a demanding finance user: months spelt in
other scripts' digits, amounts past the Decimal context, JSON floats for money, typos in a price
book, formula-shaped and CJK names in every export, empty and one-nano-dollar periods. Each answer
is a clear 4xx naming what was wrong, or an exact report; never a 500.

One in-process gateway over the in-memory analytics twin (fast): February 2024 holds nothing,
March a fact per team whose names are formula-shaped or CJK, and April a single nano-dollar.
"""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

import pypdf
import pytest
from starlette.testclient import TestClient

from adapters.analytics.memory import InMemoryAnalytics
from adapters.bus.inproc import InProcessBus
from adapters.clock import FixedClock
from domain.money import divide_rounded
from domain.usage import RequestMetered, UsageSource
from infra.config.env_settings import Settings
from infra.container import build
from infra.runner import gateway_app
from reports.chargeback import Usage
from reports.economics import ModelEconomics
from reports.percent import percent
from tests.support.gateway import ADMIN_TOKEN, KEY_SECRET, sim_config

NOW = datetime(2024, 5, 20, 10, tzinfo=UTC)
NAMES = {"f-eq": "=HYPERLINK(\"http://evil\",\"x\")", "f-plus": "+1+cmd|' /C calc'!A0",
         "f-at": "@SUM(A1)", "f-space": " =1+1", "cjk": "日本語チーム"}
FORMATS = ("json", "csv", "parquet", "xlsx", "pdf", "focus", "focus-parquet")
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def fact(at: datetime, team: str, key: str, cost: int, model: str = "sim", app: str | None = None,
         latency_ms: int = 100) -> RequestMetered:
    return RequestMetered(event_id=str(uuid.uuid4()), occurred_at=at, key_id=key, user_id=f"u-{team}",
                          team_id=team, model=model, endpoint="/v1/chat/completions", prompt_tokens=10,
                          completion_tokens=5, cached_tokens=0, latency_ms=latency_ms, status=200,
                          usage_source=UsageSource.UPSTREAM, price_version=1, cost=cost,
                          labels=MappingProxyType({"app": app} if app else {}))


@pytest.fixture(scope="module")
def store() -> InMemoryAnalytics:
    return InMemoryAnalytics()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, store: InMemoryAnalytics) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("reports-attacks")
    settings = Settings(data_dir=data_dir, dev=True, admin_token=ADMIN_TOKEN, key_secret=KEY_SECRET,
                        gateway_id="gw-attacks", billing_timezone="Europe/Paris")
    system = build(settings, sim_config("http://127.0.0.1:9/v1"), clock=FixedClock(NOW), analytics=store,
                   bus=InProcessBus(partitions=1))
    try:
        with TestClient(gateway_app(system, frozenset({"gateway"})), raise_server_exceptions=False) as client:
            client.headers["authorization"] = f"Bearer {ADMIN_TOKEN}"
            facts = []
            for n, (team, name) in enumerate(NAMES.items()):
                client.post("/api/admin/teams", json={"team_id": team, "name": name, "cost_center": name}
                            ).raise_for_status()
                user = f"u-{team}"
                client.post("/api/admin/users", json={"user_id": user, "team_id": team}).raise_for_status()
                key = client.post("/api/keys", json={"name": name, "models": ["sim"], "user_id": user}).json()
                facts.append(fact(datetime(2024, 3, 5, 12, tzinfo=UTC), team, key["id"], 1000 + n, app=name))
            facts.append(fact(datetime(2024, 4, 10, 12, tzinfo=UTC), "f-eq", facts[0].key_id, 1))
            store.insert_usage(facts, batch_id="attacks")
            yield client
    finally:
        system.close()


def report(api: TestClient, kind: str = "chargeback", **params: str):
    return api.get(f"/api/admin/reports/{kind}", params=params)


def assert_clear_400(response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert all(word in message for word in words), message


# ----- months and periods ---------------------------------------------------------------------

def test_a_month_spelt_in_other_scripts_digits_cannot_close_a_closed_month_a_second_time(api):
    assert api.post("/api/admin/periods/2024-02/close").status_code == 201
    for spelling in ("٢٠٢٤-02", "２０２４-02", "2024-٠٢"):
        assert_clear_400(api.post(f"/api/admin/periods/{spelling}/close"), "YYYY-MM")
        assert_clear_400(api.get(f"/api/admin/periods/{spelling}"), "YYYY-MM")
    assert [c["month"] for c in api.get("/api/admin/periods").json()["closed"]] == ["2024-02"]
    assert api.post("/api/admin/periods/2024-02/close").status_code == 409


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "2026-02-29"])
def test_a_month_that_is_not_a_calendar_month_is_a_400_naming_it_not_a_conflict(api, month):
    for answer in (api.get(f"/api/admin/periods/{month}"), api.post(f"/api/admin/periods/{month}/close")):
        assert_clear_400(answer, "YYYY-MM")
        assert answer.json()["error"]["param"] == "month"


@pytest.mark.parametrize("period", ["٢٠٢٤-03", "２０２４-03", "2024-٠٣", "٢٠٢٤-Q1", "2026-02-29..2026-03-01",
                                    "2024-03-01..2014-03-01", "9999-01", "2024-13"])
def test_an_odd_report_period_is_a_400_that_says_what_to_write(api, period):
    assert_clear_400(report(api, period=period), "YYYY-MM")


def test_an_empty_month_and_a_one_nano_dollar_month_export_in_every_format(api):
    for period, cost, share in (("2024-02", "0.00", "0.00"), ("2024-01", "0.00", "0.00"),
                                ("2024-04", "0.000000001", "100.00")):
        for fmt in FORMATS:
            answer = report(api, period=period, format=fmt, group_by="team")
            assert answer.status_code == 200, (period, fmt, answer.text[:300])
        totals = report(api, period=period, group_by="team").json()["totals"]
        assert (totals["cost_usd"], totals["share_percent"]) == (cost, share)


# ----- money past the Decimal context ---------------------------------------------------------

def test_a_price_book_in_the_quintillions_rerates_exactly_instead_of_failing(api):
    huge = "9" * 56
    body = report(api, "rerate", period="2024-03", group_by="team", price_book=f"flat:{huge}/1m").json()
    for row in body["rows"]:
        rerated, actual = Fraction(row["rerated_cost_usd"]), Fraction(row["actual_cost_usd"])
        assert rerated == Fraction(int(huge) * 15, 10**6)  # 15 tokens, exact to the nano-dollar
        exact = (rerated - actual) * 100 / actual
        assert abs(Fraction(row["difference_percent"]) - exact) <= Fraction(1, 200)
    csv_answer = report(api, "rerate", period="2024-03", price_book=f"flat:{huge}/1m", format="csv")
    assert csv_answer.status_code == 200 and csv_answer.text.splitlines()[-1].startswith("TOTAL,")


def test_a_gpu_cost_far_above_the_revenue_gives_an_exact_margin_percent(api, store):
    assert report(api, "economics", period="2024-05").json()["models"] == []  # no usage: no division
    change = api.put("/api/admin/models/gpu-heavy", json={"upstream_url": "http://127.0.0.1:9/v1", "price": {
        "input_per_million": "0", "output_per_million": "0", "gpu_cost_per_hour": "1000000000000"}})
    assert change.status_code == 200, change.text
    store.insert_usage([fact(datetime(2024, 5, 20, 11, tzinfo=UTC), "f-at", str(uuid.uuid4()), 1,
                             model="gpu-heavy", latency_ms=3_600_000)], batch_id="gpu-heavy")
    rows = {m["model"]: m for m in report(api, "economics", period="2024-05").json()["models"]}
    heavy = rows["gpu-heavy"]
    assert (heavy["revenue_usd"], heavy["gpu_cost_usd"]) == ("0.000000001", "1000000000000")
    assert heavy["margin_percent"] == f"{(1 - 10**21) * 100}.00"
    # and past the 28 digits of the Decimal context, where quantize used to raise
    assert ModelEconomics("m", Usage(cost=1), Fraction(1), 10**40).margin_percent == Decimal(-(10**42) + 100)
    assert percent(10**60, 3) == Decimal(f"{divide_rounded(10**64, 3)}E-2")


def test_a_json_float_or_an_amount_past_a_trillion_is_refused_as_a_model_price(api):
    for raw, words in (
            (b'{"price": {"input_per_million": 0.30000000000000001, "output_per_million": "2"}}',
             ("decimal string",)),
            (b'{"price": {"input_per_million": "1", "output_per_million": 1e2}}', ("decimal string",)),
            (b'{"price": {"input_per_million": "1000000000000.000000001", "output_per_million": "2"}}',
             ("at most",))):
        answer = api.put("/api/admin/models/sim", content=raw, headers={"content-type": "application/json"})
        assert_clear_400(answer, *words)
    exact = api.put("/api/admin/models/sim", content=b'{"price": {"input_per_million": 123456789012, '
                    b'"output_per_million": "999999999999.999999999", '
                    b'"effective_from": "2024-06-01T00:00:00Z"}}',
                    headers={"content-type": "application/json"})
    assert exact.status_code == 200, exact.text
    newest = exact.json()["prices"][-1]
    assert (newest["input_per_million"], newest["output_per_million"]) == ("123456789012",
                                                                          "999999999999.999999999")


def test_a_price_book_naming_a_model_that_is_nowhere_is_a_400_and_a_catalogue_model_is_fine(api):
    assert_clear_400(report(api, "rerate", period="2024-03", price_book="ｓｉｍ=1/2"), "spelling", "ｓｉｍ")
    assert_clear_400(report(api, "rerate", period="2024-03", price_book="sim=1/2;gtp-4=1/1"), "gtp-4")
    assert report(api, "rerate", period="2024-02", price_book="sim=1/2").status_code == 200  # no usage


# ----- user-chosen strings in the files -------------------------------------------------------

def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _is_number(cell: str) -> bool:
    try:
        Decimal(cell)
    except ArithmeticError:
        return False
    return True


@pytest.mark.parametrize("group_by", ["key", "team", "cost_center", "application"])
def test_no_csv_cell_a_spreadsheet_would_run_as_a_formula_even_past_leading_spaces(api, group_by):
    files = [report(api, period="2024-03", group_by=group_by, format="csv").text,
             report(api, "rerate", period="2024-03", group_by=group_by, format="csv",
                    price_book="flat:1/1m").text]
    for text in files:
        for cell in _cells(text):
            assert not cell.lstrip(" \u00a0").startswith(FORMULA) or _is_number(cell), cell
        assert "' =1+1" in text  # quoted, and still readable


def test_the_xlsx_keeps_formula_shaped_names_as_text(api):
    xlsx = report(api, period="2024-03", group_by="team", format="xlsx").content
    workbook = zipfile.ZipFile(io.BytesIO(xlsx))
    sheet = workbook.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet and "<f " not in sheet
    assert "=HYPERLINK" in workbook.read("xl/sharedStrings.xml").decode()


def test_the_pdf_shows_a_name_its_font_cannot_draw_as_question_marks_not_as_a_blank_line(api):
    pdf = pypdf.PdfReader(io.BytesIO(report(api, period="2024-03", group_by="team", format="pdf").content))
    text = pdf.pages[0].extract_text()
    assert "?" * len(NAMES["cjk"]) in text
    assert "=HYPERLINK" in text and "@SUM(A1)" in text
