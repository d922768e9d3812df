"""The reconciliation's comparison: pure sums and differences, no stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.usage import RequestMetered, UsageSource
from infra.reconcile import Sums, compare, differences, ledger_totals, month

START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)


def fact(**fields: Any) -> RequestMetered:
    defaults: dict[str, Any] = dict(
        event_id=str(uuid.uuid4()), occurred_at=AT, key_id="k1", user_id="alice", team_id="red",
        model="gemma-3", endpoint="/v1/chat/completions", prompt_tokens=100, completion_tokens=20,
        cached_tokens=0, latency_ms=10, status=200, usage_source=UsageSource.UPSTREAM,
        price_version=1, cost=1_500)
    return RequestMetered(**{**defaults, **fields})


def test_equal_totals_have_no_differences() -> None:
    totals = ledger_totals([fact(), fact(user_id="bob", team_id=None)], START, END)

    assert differences(totals, dict(totals)) == []
    assert totals[("team", "")] == Sums(1, 100, 20, 1_500)
    assert {row.grouping for row in compare(totals, totals)} == {"user", "key", "team", "model"}


def test_a_group_missing_from_analytics_is_a_difference_against_zeros() -> None:
    ledger = ledger_totals([fact(), fact(user_id="bob")], START, END)
    analytics = {group: sums for group, sums in ledger.items() if group != ("user", "bob")}

    [row] = differences(ledger, analytics)

    assert (row.grouping, row.group, row.analytics) == ("user", "bob", Sums())
    assert row.difference == Sums(-1, -100, -20, -1_500)


def test_a_cost_off_by_one_nano_unit_is_a_difference() -> None:
    ledger = ledger_totals([fact()], START, END)
    analytics = {**ledger, ("model", "gemma-3"): Sums(1, 100, 20, 1_501)}

    [row] = differences(ledger, analytics)

    assert (row.grouping, row.group, row.difference) == ("model", "gemma-3", Sums(cost=1))


def test_the_parts_of_a_stream_count_as_one_request() -> None:
    parts = [fact(request_id="r1", requests=1, final=False, prompt_tokens=100, completion_tokens=5, cost=10),
             fact(request_id="r1", requests=0, final=False, prompt_tokens=0, completion_tokens=5, cost=10),
             fact(request_id="r1", requests=0, prompt_tokens=0, completion_tokens=3, cost=6)]

    totals = ledger_totals(parts, START, END)

    assert totals[("key", "k1")] == Sums(requests=1, prompt_tokens=100, completion_tokens=13, cost=26)


def test_only_facts_inside_the_half_open_period_count() -> None:
    totals = ledger_totals([fact(occurred_at=START), fact(occurred_at=END)], START, END)

    assert totals[("user", "alice")].requests == 1


def test_a_month_is_bounded_in_the_billing_time_zone() -> None:
    assert month("2026-03", "Europe/Berlin") == (datetime(2026, 2, 28, 23, tzinfo=UTC),
                                                 datetime(2026, 3, 31, 22, tzinfo=UTC))
    assert month(None, "UTC", now=AT) == (START, END)


@pytest.mark.parametrize("period", ["2026-13", "2026-3", "march", "2026-03-01"])
def test_a_malformed_period_is_refused_with_the_expected_form(period: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month(period, "UTC")


def test_a_report_of_thousands_of_groups_lists_only_the_differing_ones() -> None:
    import io

    from rich.console import Console

    from infra.reconcile import MAX_LISTED, report

    ledger = ledger_totals([fact(user_id=f"user-{i}", key_id=f"key-{i}") for i in range(200)], START, END)
    analytics = dict(ledger)
    analytics[("user", "user-7")] = Sums(0, 0, 0, 0)
    out = io.StringIO()
    code = report(compare(ledger, analytics), START, END, "UTC", Console(file=out, width=200))

    text = out.getvalue()
    assert code == 1
    assert "user-7" in text and "user-8 " not in text
    assert f"only differing groups are, up to {MAX_LISTED}" in text
    quiet = io.StringIO()
    assert report(compare(ledger, ledger), START, END, "UTC", Console(file=quiet, width=200)) == 0
    assert "user-" not in quiet.getvalue() and "groups match to the nano-unit" in quiet.getvalue()
