"""The admin analytics API's figures (issue 11) against polars over the raw facts.

`FiguresChecks` holds every check; a subclass per analytics store runs them all on its store:
the in-memory twin, and embedded chDB, whose rollups must answer as the raw facts do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from adapters.analytics.chdb import ChdbAnalytics
from adapters.analytics.memory import InMemoryAnalytics
from tests.support.admin_analytics import (
    BILLING_TZ,
    GHOST,
    App,
    analytics_app,
    as_read,
    avg_ms,
    expected,
    hour_labels,
    local_midnight,
    march,
    p95,
    pct,
    summary_of,
    usd,
    utc,
    value_of,
)

MARCH = {"from": "2024-03-01", "to": "2024-04-01"}
FILTERS = [{}, {"model": "m-large"}, {"user_id": "ana", "model": "m-small"},
           {"team_id": "red", "application": "canopy"}, {"team_id": ""}, {"application": ""}]


def exact_figures(figures: dict) -> dict:
    """The average latency and the error rate as exact fractions; the cost in nano-dollars."""
    finished = figures["finished"]
    return {"cost_usd": figures["cost"],
            "avg_latency_ms": Fraction(sum(figures["latencies"]), finished) if finished else None,
            "error_rate": Fraction(figures["errors"], finished) if finished else 0}


class FiguresChecks:
    """Every endpoint's figures, checked on the store `open_store` gives."""

    @classmethod
    def open_store(cls, directory):  # pragma: no cover - each subclass says
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def app(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
        directory = tmp_path_factory.mktemp("admin-analytics")
        with analytics_app(directory / "system", cls.open_store(directory / "store")) as running:
            yield running

    @pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
    @pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
    def test_the_summary_matches_the_facts_for_the_period_and_the_one_before(self, app, tz, filters):
        body = app.get("/summary", timezone=tz, **MARCH, **filters).json()
        start, end = march(tz)
        previous = start - (end - start)
        assert (body["from"], body["to"], body["timezone"]) == (utc(start), utc(end), tz)
        assert body["filters"] == filters
        now_figures = expected(app.frame, start, end, tz, **filters)[()]
        then_figures = expected(app.frame, previous, start, tz, **filters)[()]
        now, then = summary_of(now_figures), summary_of(then_figures)
        assert as_read(body) == now and now["total_requests"] > 0
        assert as_read(body["previous"]) == then
        assert body["previous"]["from"] == utc(previous)
        # changes are of the exact figures: the average latency and error rate before rounding
        exact_now, exact_then = (exact_figures(f) for f in (now_figures, then_figures))
        assert set(body["change_percent"]) == set(now)
        for name, value in body["change_percent"].items():
            a, b = exact_now.get(name, now[name]), exact_then.get(name, then[name])
            assert value == (None if not b else pct(Fraction(a) - Fraction(b), abs(Fraction(b)))), name

    def test_the_default_period_is_this_month_so_far_in_the_billing_time_zone(self, app):
        body = app.get("/summary").json()
        assert (body["from"], body["to"]) == ("2024-02-29T23:00:00+00:00", "2024-03-20T23:00:00+00:00")
        assert body["timezone"] == BILLING_TZ
        start, end = local_midnight("2024-03-01", BILLING_TZ), local_midnight("2024-03-21", BILLING_TZ)
        assert as_read(body) == summary_of(expected(app.frame, start, end)[()])

    def test_an_empty_period_is_all_zeros_and_has_no_latency(self, app):
        body = app.get("/summary", **{"from": "2023-01-01", "to": "2023-02-01"})
        assert body.status_code == 200
        assert as_read(body.json()) == {
            "total_requests": 0, "total_tokens": 0, "prompt_tokens": 0, "completion_tokens": 0,
            "active_users": 0, "cost_usd": 0, "avg_latency_ms": None, "p95_latency_ms": None,
            "error_rate": 0.0}
        assert set(body.json()["change_percent"].values()) == {None}
        points = app.get("/timeseries", metric="cost", **{"from": "2023-01-01", "to": "2023-01-03"}).json()
        assert points["points"] == [{"t": "2023-01-01", "value": "0"}, {"t": "2023-01-02", "value": "0"}]
        for path in ("/models", "/top-users", "/users"):
            assert app.get(path, **{"from": "2023-01-01", "to": "2023-02-01"}).json()["data"] == []

    @pytest.mark.parametrize("metric", ["requests", "tokens", "cost", "errors", "latency"])
    @pytest.mark.parametrize("tz", ["Europe/Paris", "America/New_York"])
    def test_the_hourly_series_has_every_local_hour_and_the_facts_figures(self, app, tz, metric):
        body = app.get("/timeseries", metric=metric, bucket="hour", timezone=tz, **MARCH).json()
        start, end = march(tz)
        labels = hour_labels(start, end, tz)
        assert len(labels) == 31 * 24 - 1  # one spring-forward hour
        assert [p["t"] for p in body["points"]] == labels
        groups = expected(app.frame, start, end, tz, by=("hour",))
        for point in body["points"]:
            figures = groups.get((point["t"],))
            assert point["value"] == value_of(figures, metric), point

    @pytest.mark.parametrize("bucket, count", [("day", 31), ("week", 5), ("month", 1)])
    def test_day_week_and_month_series_follow_the_local_calendar(self, app, bucket, count):
        body = app.get("/timeseries", metric="tokens", bucket=bucket, timezone="America/New_York",
                       **MARCH).json()
        start, end = march("America/New_York")
        groups = expected(app.frame, start, end, "America/New_York", by=(bucket,))
        assert len(body["points"]) == count
        assert {p["t"]: p["value"] for p in body["points"] if p["value"]} == {
            k[0]: v["tokens"] for k, v in groups.items()}
        first = {"day": "2024-03-01", "week": "2024-02-26", "month": "2024-03-01"}[bucket]
        assert body["points"][0]["t"] == first

    @pytest.mark.parametrize("day, tz, hours", [("2024-03-31", "Europe/Paris", 23),
                                                ("2024-10-27", "Europe/Paris", 25),
                                                ("2024-03-10", "America/New_York", 23)])
    def test_a_dst_day_has_23_or_25_hourly_points_and_sums_to_its_day(self, app, day, tz, hours):
        following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        params = {"from": day, "to": following, "timezone": tz, "metric": "requests"}
        series = app.get("/timeseries", bucket="hour", **params).json()["points"]
        [whole] = app.get("/timeseries", bucket="day", **params).json()["points"]
        assert len(series) == hours and len({p["t"] for p in series}) == hours
        assert sum(p["value"] for p in series) == whole["value"] > 100
        if hours == 25:  # the repeated hour is two buckets, told apart by their offsets
            assert [p["t"] for p in series[2:4]] == ["2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00"]

    def test_a_datetime_period_with_offsets_cuts_inside_buckets(self, app):
        params = {"from": "2024-03-10T01:30:00-05:00", "to": "2024-03-10T05:15:00-04:00",
                  "timezone": "America/New_York"}
        points = app.get("/timeseries", bucket="hour", **params).json()["points"]
        assert [p["t"] for p in points] == ["2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00",
                                            "2024-03-10T04:00:00-04:00", "2024-03-10T05:00:00-04:00"]
        start = datetime(2024, 3, 10, 6, 30, tzinfo=UTC)
        reference = expected(app.frame, start, start + timedelta(hours=2, minutes=45), "America/New_York")
        assert sum(p["value"] for p in points) == reference[()]["requests"]

    @pytest.mark.parametrize("by", ["tokens", "cost", "requests"])
    def test_top_users_are_ordered_by_the_figure_with_a_daily_trend(self, app, by):
        body = app.get("/top-users", by=by, limit=3, **MARCH).json()
        start, end = march()
        users = expected(app.frame, start, end, by=("user_id",))
        ranked = sorted(users, key=lambda k: (-users[k][by], k[0]))[:3]
        assert [row["user_id"] for row in body["data"]] == [k[0] for k in ranked]
        assert len(body["days"]) == 31 and body["days"][30] == "2024-03-31"
        daily = expected(app.frame, start, end, by=("user_id", "day"))
        for row in body["data"]:
            figures = users[(row["user_id"],)]
            assert (row["requests"], row["total_tokens"], Decimal(row["cost_usd"])) == (
                figures["requests"], figures["tokens"], usd(figures["cost"]))
            trend = [daily.get((row["user_id"], day), {by: 0})[by] for day in body["days"]]
            assert [Decimal(v) if by == "cost" else v for v in row["trend"]] == (
                [usd(v) for v in trend] if by == "cost" else trend)

    def test_the_models_table_has_latency_errors_and_share_of_requests(self, app):
        body = app.get("/models", timezone="UTC", team_id="red", **MARCH).json()
        start, end = march("UTC")
        models = expected(app.frame, start, end, "UTC", by=("model",), team_id="red")
        every = sum(m["requests"] for m in models.values())
        assert [row["model"] for row in body["data"]] == [
            k[0] for k in sorted(models, key=lambda k: (-models[k]["requests"], k[0]))]
        for row in body["data"]:
            m = models[(row["model"],)]
            assert row == {"model": row["model"], "requests": m["requests"], "total_tokens": m["tokens"],
                           "cost_usd": row["cost_usd"], "avg_latency_ms": avg_ms(m),
                           "p95_latency_ms": p95(m["latencies"]),
                           "error_rate": pct(m["errors"], m["finished"]),
                           "share": pct(m["requests"], every)}
            assert Decimal(row["cost_usd"]) == usd(m["cost"])
        assert abs(sum(row["share"] for row in body["data"]) - 100) < 0.02

    @pytest.mark.parametrize("sort", ["user_id", "requests", "tokens", "cost", "avg_cost", "trend"])
    @pytest.mark.parametrize("order", ["asc", "desc"])
    def test_the_users_table_sorts_pages_and_matches_the_facts(self, app, sort, order):
        body = app.get("/users", sort=sort, order=order, **MARCH).json()
        start, end = march()
        now = expected(app.frame, start, end, by=("user_id",))
        then = expected(app.frame, start - (end - start), start, by=("user_id",))
        assert body["total"] == len(now) == 5
        for row in body["data"]:
            n, p = now[(row["user_id"],)], then.get((row["user_id"],))
            assert (row["requests"], row["total_tokens"], Decimal(row["cost_usd"])) == (
                n["requests"], n["tokens"], usd(n["cost"]))
            assert Decimal(row["avg_cost_per_request_usd"]) == (
                Decimal(n["cost"]) / n["requests"]).quantize(Decimal(1), "ROUND_HALF_UP") / 10**9
            assert row["previous_total_tokens"] == (p["tokens"] if p else 0)
            assert row["trend_percent"] == (pct(n["tokens"] - p["tokens"], p["tokens"]) if p else None)
        key = {"user_id": lambda r: r["user_id"], "requests": lambda r: r["requests"],
               "tokens": lambda r: r["total_tokens"], "cost": lambda r: Decimal(r["cost_usd"]),
               "avg_cost": lambda r: Decimal(r["avg_cost_per_request_usd"]),
               "trend": lambda r: r["trend_percent"]}[sort]
        values = [key(r) for r in body["data"]]
        assert values == sorted(values, reverse=order == "desc")
        page = app.get("/users", sort=sort, order=order, limit=2, offset=1, **MARCH).json()["data"]
        assert page == body["data"][1:3]

    def test_the_users_csv_parses_back_to_the_json_rows(self, app):
        rows = app.get("/users", sort="cost", **MARCH).json()["data"]
        response = app.get("/users", sort="cost", format="csv", **MARCH)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        assert list(parsed[0]) == list(rows[0])
        assert parsed == [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]

    def test_a_users_deep_dive_has_totals_top_model_peak_hours_trend_and_keys(self, app):
        body = app.get("/users/ana", timezone="America/New_York", **MARCH).json()
        start, end = march("America/New_York")
        tz = "America/New_York"
        totals = expected(app.frame, start, end, tz, user_id="ana")[()]
        before = expected(app.frame, start - (end - start), start, tz, user_id="ana")[()]
        assert (body["user_id"], body["registered"]) == ("ana", True)
        assert (body["total_requests"], body["total_tokens"], Decimal(body["cost_usd"])) == (
            totals["requests"], totals["tokens"], usd(totals["cost"]))
        models = expected(app.frame, start, end, tz, by=("model",), user_id="ana")
        top = min(models, key=lambda k: (-models[k]["requests"], k[0]))
        assert body["top_model"]["model"] == top[0]
        assert body["top_model"]["share"] == pct(models[top]["requests"], totals["requests"])
        hours = expected(app.frame, start, end, tz, by=("hour_of_day",), user_id="ana")
        assert body["hours"] == [{"hour": f"{h:02d}", "requests": hours.get((f"{h:02d}",), {"requests": 0})[
            "requests"]} for h in range(24)]
        peak = max(body["hours"], key=lambda h: (h["requests"], -int(h["hour"])))
        assert body["peak_hour"] == peak["hour"]
        assert body["trend"]["previous_requests"] == before["requests"]
        assert body["trend"]["tokens_change_percent"] == pct(totals["tokens"] - before["tokens"],
                                                             before["tokens"])
        keys = expected(app.frame, start, end, tz, by=("key_id",), user_id="ana")
        names = {k["id"]: k["name"] for k in app.keys["ana"]}
        assert {k["key_id"]: (k["name"], k["requests"]) for k in body["keys"]} == {
            key: (names[key], keys[(key,)]["requests"]) for key in names}

    def test_an_unregistered_user_with_usage_shows_it_and_an_unknown_one_zeros(self, app):
        ghost = app.get("/users/" + GHOST, **MARCH).json()
        start, end = march()
        assert ghost["registered"] is False
        assert ghost["total_requests"] == expected(app.frame, start, end, user_id=GHOST)[()]["requests"] > 0
        assert [k["name"] for k in ghost["keys"]] == [None]
        nobody = app.get("/users/nobody", **MARCH).json()
        assert (nobody["registered"], nobody["total_requests"], nobody["cost_usd"], nobody["top_model"],
                nobody["peak_hour"], nobody["keys"]) == (False, 0, "0", None, None, [])
        assert [h["requests"] for h in nobody["hours"]] == [0] * 24

    def test_filters_combine_the_same_way_on_every_endpoint(self, app):
        filters = {"team_id": "red", "model": "m-embed", "application": "research", **MARCH}
        total = app.get("/summary", **filters).json()["total_requests"]
        assert total == sum(p["value"] for p in app.get("/timeseries", **filters).json()["points"])
        assert total == sum(r["requests"] for r in app.get("/models", **filters).json()["data"])
        assert total == sum(r["requests"] for r in app.get("/users", **filters).json()["data"])
        assert {r["user_id"] for r in app.get("/users", **filters).json()["data"]} <= {"ana", "ben"}
        key = app.keys["ana"][1]["id"]
        only_key = app.get("/users/ana", key_id=key, **MARCH).json()
        assert [k["key_id"] for k in only_key["keys"]] == [key]
        assert only_key["total_requests"] == app.get("/summary", key_id=key, **MARCH).json()["total_requests"]


class TestOnTheInMemoryStore(FiguresChecks):
    @classmethod
    def open_store(cls, directory):
        return InMemoryAnalytics()


class TestOnChdb(FiguresChecks):
    """The same checks on embedded chDB, its rollups in the billing time zone as production builds
    it: Paris questions read the daily rollup, New York and UTC ones the hourly."""

    @classmethod
    def open_store(cls, directory):
        return ChdbAnalytics(directory, rollup_timezone=BILLING_TZ)
