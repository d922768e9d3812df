"""The admin analytics API's adversarial pass (issue 11): only admins get figures, and every bad
parameter is a 400 in OpenAI's error shape naming the parameter, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.analytics.memory import InMemoryAnalytics
from tests.support.admin_analytics import App, analytics_app
from tests.support.gateway import openai_error

ENDPOINTS = ["/summary", "/timeseries", "/top-users", "/models", "/users", "/users/ana", "/users/ben"]
MARCH = {"from": "2024-03-01", "to": "2024-04-01"}
LONG = "a" * 5000
BAD = [  # (path, parameters, the parameter the error names)
    ("/summary", {"from": "2024-02-30"}, "from"),
    ("/summary", {"from": "2024-13-01"}, "from"),
    ("/summary", {"from": "yesterday"}, "from"),
    ("/summary", {"from": ""}, "from"),
    ("/summary", {"from": "2024-03-01T10:00:00"}, "from"),  # no offset: ambiguous
    ("/summary", {"from": "2024-03-01T25:00:00Z"}, "from"),
    ("/summary", {"from": "1999-12-31"}, "from"),
    ("/summary", {"from": "0001-01-01"}, "from"),
    ("/summary", {"to": "2200-01-02"}, "to"),
    ("/summary", {"to": "9999-12-31T23:59:59+23:59"}, "to"),
    ("/summary", {"to": LONG}, "to"),
    ("/summary", {"from": "2024-03-02", "to": "2024-03-01"}, "to"),
    ("/summary", {"timezone": "Mars/Olympus"}, "timezone"),
    ("/summary", {"timezone": "America"}, "timezone"),  # a directory of the zone database
    ("/summary", {"timezone": "../../etc/passwd"}, "timezone"),
    ("/summary", {"timezone": ""}, "timezone"),
    ("/summary", {"timezone": "Europe/Paris\x00"}, "timezone"),
    ("/summary", {"timezone": LONG}, "timezone"),
    ("/summary", {"model": ""}, "model"),
    ("/summary", {"model": LONG}, "model"),
    ("/summary", {"user_id": "a\nb"}, "user_id"),
    ("/summary", {"key_id": "k" * 201}, "key_id"),
    ("/summary", {"team_id": "red\x1b[31m"}, "team_id"),
    ("/summary", {"application": LONG}, "application"),
    ("/timeseries", {"metric": "cpu"}, "metric"),
    ("/timeseries", {"bucket": "year"}, "bucket"),
    ("/timeseries", {"bucket": "hour", "from": "2023-01-01", "to": "2024-02-05"}, "bucket"),  # 400 days
    ("/timeseries", {"bucket": "day", "from": "2001-01-01", "to": "2199-01-01"}, "bucket"),
    ("/top-users", {"by": "latency"}, "by"),
    ("/top-users", {"limit": "0"}, "limit"),
    ("/top-users", {"limit": "101"}, "limit"),
    ("/top-users", {"limit": "-1"}, "limit"),
    ("/top-users", {"limit": "1.5"}, "limit"),
    ("/top-users", {"limit": str(10**30)}, "limit"),
    ("/top-users", {"from": "2000-01-01", "to": "2150-01-01"}, "from"),  # a daily trend of 150 years
    ("/users", {"sort": "email"}, "sort"),
    ("/users", {"order": "up"}, "order"),
    ("/users", {"format": "xlsx"}, "format"),
    ("/users", {"limit": "10001"}, "limit"),
    ("/users", {"offset": "-1"}, "offset"),
    ("/users", {"offset": str(10**12)}, "offset"),
    ("/users/" + "u" * 201, {}, "user_id"),
    ("/users/ana", {"from": "2024-02-30"}, "from"),
    ("/summary", {"user": "ana"}, "user"),  # a misspelt filter is not ignored
    ("/users/ana", {"user_id": "ben"}, "user_id"),  # the user is the path's
    ("/models", {"metric": "cost"}, "metric"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    directory: Path = tmp_path_factory.mktemp("admin-analytics-access")
    with analytics_app(directory, InMemoryAnalytics()) as running:
        yield running


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_user_token_is_refused_on_every_endpoint_even_for_its_own_id(app: App, path: str) -> None:
    for user in ("ana", "ben"):
        response = app.get(path, token=app.user_tokens[user], user_id=user, **MARCH)
        assert "total_requests" not in response.text and "cost_usd" not in response.text
        openai_error(response, 403, "admin_required")
    openai_error(app.get("/users", token=app.user_tokens["ana"], format="csv"), 403, "admin_required")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_token_or_an_unknown_one_is_a_401(app: App, path: str) -> None:
    openai_error(app.admin.get("/api/admin/analytics" + path, headers={"authorization": ""}), 401,
                 "missing_token")
    openai_error(app.get(path, token="mlu-not-a-token"), 401, "invalid_token")


def test_an_admin_user_gets_the_figures(app: App) -> None:
    app.admin.post("/api/admin/users", json={"user_id": "boss", "role": "admin"}).raise_for_status()
    token = app.admin.post("/api/admin/users/boss/tokens").json()["token"]
    for path in ENDPOINTS:
        assert app.get(path, token=token, **MARCH).status_code == 200, path


@pytest.mark.parametrize("path, params, param", BAD, ids=[f"{p}-{list(q.items())}"[:60] for p, q, _ in BAD])
def test_a_bad_parameter_is_a_400_naming_it(app: App, path: str, params: dict, param: str) -> None:
    error = openai_error(app.get(path, **params), 400)
    assert error["param"] == param, error
    assert param in error["message"] or param.replace("_id", "") in error["message"], error
    assert len(error["message"]) < 600, "a huge value is not echoed back whole"


def test_a_period_of_zero_length_is_empty_not_an_error(app: App) -> None:
    same = {"from": "2024-03-05T10:00:00Z", "to": "2024-03-05T12:00:00+02:00"}
    assert app.get("/summary", **same).json()["total_requests"] == 0
    assert app.get("/timeseries", bucket="hour", **same).json()["points"] == []


def test_the_largest_allowed_page_and_limit_are_answered(app: App) -> None:
    assert app.get("/top-users", limit=100, **MARCH).status_code == 200
    body = app.get("/users", limit=10_000, offset=10**9, **MARCH).json()
    assert (body["data"], body["total"]) == ([], 5)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
DATES = st.one_of(TEXT, st.dates().map(str),
                  st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.none() | DATES, end=st.none() | DATES, tz=st.none() | TEXT | st.timezone_keys(),
       bucket=st.sampled_from(["hour", "day", "week", "month"]))
def test_any_period_and_time_zone_is_answered_or_refused_with_a_400(app: App, start, end, tz, bucket) -> None:
    params = {k: v for k, v in {"from": start, "to": end, "timezone": tz}.items() if v is not None}
    response = app.get("/timeseries", bucket=bucket, **params)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert openai_error(response, 400)["param"] in ("from", "to", "timezone", "bucket")


NAMES = ["from", "to", "timezone", "model", "user_id", "key_id", "team_id", "application", "metric",
         "bucket", "by", "limit", "sort", "order", "offset", "format"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ENDPOINTS + ["/users/" + "\u00e9\u2603", "/users/o'brien"]),
       params=st.dictionaries(st.sampled_from(NAMES), TEXT | st.integers(-(2**70), 2**70).map(str),
                              max_size=4))
def test_any_parameters_on_any_endpoint_are_answered_or_a_400_never_a_500(app: App, path, params) -> None:
    response = app.get(path, **params)
    assert response.status_code in (200, 400), (response.status_code, response.text)
    if response.status_code == 400:
        error = openai_error(response, 400)
        if error["param"] is None:  # several bad at once: the message names each
            assert any(f"{name}:" in error["message"] for name in params), (params, error)
        else:
            assert error["param"] in params or error["param"] == "user_id", (params, error)


def test_a_user_id_that_looks_like_a_spreadsheet_formula_is_text_in_the_users_csv(tmp_path: Path):
    """Usage facts name users as the gateway saw them; a CSV opened in a spreadsheet must not run them."""
    store = InMemoryAnalytics()
    with analytics_app(tmp_path, store) as app:
        template = app.facts[0]
        evil = ["=HYPERLINK(\"http://x\")", "+1+1", "-2-2", "@SUM(A1)"]
        store.insert_usage([template._replace(event_id=f"evil-{i}", user_id=user)
                            for i, user in enumerate(evil)], batch_id="evil")
        text = app.get("/users", format="csv", sort="user_id", limit=500,
                       **{"from": "2024-01-01", "to": "2024-12-31"}).text
        cells = [line.split(",")[0].strip('"') for line in text.splitlines()[1:]]
        for user in evil:
            assert "'" + user.replace('"', '""') in cells
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
