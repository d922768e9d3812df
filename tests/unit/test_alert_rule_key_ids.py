"""A key rule's scope id is kept as budgets and anomalies name the key: its canonical UUID. Before,
a key id written in capitals or without hyphens was accepted as written and the rule never fired."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from domain.alerts.evaluate import BudgetState, budget_firings
from domain.alerts.rule_spec import rule_spec

KEY = uuid4()
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize("written", [str(KEY), str(KEY).upper(), KEY.hex, KEY.hex.upper()])
def test_a_key_rule_written_in_any_uuid_form_fires_for_that_key(written: str) -> None:
    spec = rule_spec("key at 50%", "key", written, {"budget_percent": 50}, ["email"], ["@owner"])
    assert spec.scope_id == str(KEY)
    spent = BudgetState("key", str(KEY), "month", START, END, 5, 10, "hard")
    assert len(budget_firings(spent, [(uuid4(), spec)])) == 1


def test_a_key_id_that_is_not_a_uuid_is_kept_as_given() -> None:
    assert rule_spec("r", "key", "k1", {"budget_percent": 50}, ["email"], ["@owner"]).scope_id == "k1"
