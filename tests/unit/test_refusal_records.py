"""The pure parts of replay and explain: time-ordered request ids, a budget's state at an
instant, folding up to an instant, and the refusal log's flood bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.budget import Budget
from domain.ids import id_time, time_ordered_id
from domain.keys import ApiKey
from domain.periods import Period
from domain.quota_policy import BudgetPolicy, Mode, Scope
from domain.replay import budget_at, fold_until, key_at
from domain.services.decisions import Decisions
from gateway.views import refusal_log
from gateway.views.refusal_log import RefusalLog

T0 = datetime(2025, 3, 10, 12, tzinfo=UTC)


def test_a_time_ordered_id_says_when_it_was_made_and_other_ids_say_nothing():
    made = time_ordered_id(int(T0.timestamp() * 1000))
    assert id_time(made) == T0
    assert id_time(str(uuid4())) is None and id_time("not an id") is None and id_time("") is None
    assert time_ordered_id(1)[:13] < time_ordered_id(2)[:13]  # the time prefix orders them


def budget(mode: Mode, limit: int = 1000, spent: int = 0, grace_hours: int | None = None) -> Budget:
    b = Budget(scope=Scope.USER, scope_id="u", tz="UTC", at=T0)
    b.set_policy(BudgetPolicy(limit, Period.MONTH, mode, 10, grace_hours), T0)
    if spent:
        b.accrue(spent, 1, "2025-03-10", T0, ["r"])
    return b


@pytest.mark.parametrize(("mode", "spent", "state"), [
    (Mode.HARD, 0, "ok"), (Mode.HARD, 799, "ok"), (Mode.HARD, 800, "warning"), (Mode.HARD, 1000, "blocked"),
    (Mode.GRACE, 1000, "grace"), (Mode.GRACE, 1099, "grace"), (Mode.GRACE, 1100, "blocked"),
    (Mode.SOFT, 5000, "warning")])
def test_a_budgets_state_at_an_instant_follows_its_mode_and_spend(mode, spent, state):
    assert budget_at(budget(mode, spent=spent), T0 + timedelta(hours=1)).state == state


def test_a_grace_budget_is_blocked_once_its_grace_window_is_over():
    b = budget(Mode.GRACE, spent=1000, grace_hours=2)
    assert budget_at(b, T0 + timedelta(hours=1)).state == "grace"
    assert budget_at(b, T0 + timedelta(hours=2)).state == "blocked"


def test_spend_of_an_earlier_period_is_not_spent_in_the_next():
    at = budget_at(budget(Mode.HARD, spent=1000), datetime(2025, 4, 1, 1, tzinfo=UTC))
    assert (at.spent, at.state, at.period_start) == (0, "ok", datetime(2025, 4, 1, tzinfo=UTC))


def test_folding_stops_each_aggregate_at_its_first_event_past_the_instant():
    key = ApiKey(key_id=uuid4(), user_id="u", team_id=None, name="k", description="", models=["a"],
                 prefix="sk-1", secret_hmac="h1", expires_at=None, rpm_limit=None, tpm_limit=None, at=T0)
    key.change_models(["b"], T0 + timedelta(hours=1))
    key.rotate("sk-2", "h2", T0 + timedelta(hours=2))
    events = key.collect_events()
    before, between, after = (fold_until(events, T0 + timedelta(minutes=m))[key.id] for m in (30, 90, 150))
    assert (before.models, before.prefix) == (["a"], "sk-1")
    assert (between.models, between.prefix) == (["b"], "sk-1")
    assert (after.models, after.prefix) == (["b"], "sk-2")
    assert fold_until(events, T0 - timedelta(seconds=1)) == {}
    expiring = ApiKey(key_id=uuid4(), user_id="u", team_id=None, name="k", description="", models=[],
                      prefix="p", secret_hmac="h", expires_at=T0 + timedelta(hours=1), rpm_limit=None,
                      tpm_limit=None, at=T0)
    assert key_at(expiring, T0 + timedelta(hours=2)).status == "expired"  # before any KeyExpired


def record(key_id: str | None, rule: str = "hard_cap") -> dict:
    return {"request_id": time_ordered_id(1), "at": T0, "status": 429, "code": "insufficient_quota",
            "rule": rule, "message": "m", "key_id": key_id, "user_id": None, "team_id": None,
            "model": None, "details": {}}


def test_the_refusal_log_keeps_20_a_minute_per_key_and_rule_and_counts_the_rest():
    store = Decisions(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    log = RefusalLog(lambda: store, background=False)
    kept = [log.add(record("k1")) for _ in range(50)] + [log.add(record("k2")) for _ in range(5)]
    kept.append(log.add(record("k1", "rate_limit")))
    assert kept.count(True) == 20 + 5 + 1 and log.counted == 30
    first = log._pending[0]["request_id"]
    assert log.queued(first) is not None
    log.flush(close_minute=True)
    assert log.queued(first) is None and store.refusal(first).rule == "hard_cap"
    assert store.counted() == 30 and store.stored() == 26 + 1


def test_the_refusal_log_counts_past_its_queue_limit_and_survives_a_failing_store(monkeypatch):
    monkeypatch.setattr(refusal_log, "MAX_PENDING", 3)

    class Broken:
        def record(self, *_):
            raise OSError("disk full")

    log = RefusalLog(lambda: Broken(), background=False)
    added = [record(f"k{i}") for i in range(5)]
    assert [log.add(r) for r in added] == [True] * 3 + [False] * 2
    assert log.flush() == 0 and log.written == 0  # logged and dropped: the request path never sees it
    assert log.queued(added[0]["request_id"]) is None
