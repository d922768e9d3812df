"""Stored rows the analytics store cannot hold are named and explained, not inserted."""

from __future__ import annotations

import pytest

from projections.usage_facts import checked_facts
from tests.support.projector import fact


@pytest.mark.parametrize(("change", "reason"), [
    ({"occurred_at": "2024-05-01T00:00:00"}, "timezone-aware"),
    ({"occurred_at": "1800-05-01T00:00:00+00:00"}, "1900-9999"),
    ({"prompt_tokens": -1}, "prompt_tokens"),
    ({"cost": 1.5}, "cost"),
    ({"cost": 2**63}, "cost"),
    ({"status": 70_000}, "status"),
    ({"requests": 2}, "requests"),
    ({"labels": {"tier": 1}}, "labels"),
    ({"user_id": None}, "user_id"),
    ({"usage_source": "guessed"}, "RequestMetered"),
])
def test_a_stored_fact_the_store_cannot_hold_is_named_and_explained(change: dict, reason: str) -> None:
    good = fact(1)
    row = {**good.to_data(), **change}
    columns = list(row)
    facts, problems = checked_facts(columns, [list(good.to_data().values()), list(row.values())])
    assert facts == [good]
    assert len(problems) == 1 and problems[0][0] == 1
    assert reason in problems[0][1]
