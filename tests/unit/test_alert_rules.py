"""Alert rules as the pure model has them: what a rule may say, when it fires, what it says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.alerts.evaluate import AnomalyFacts, BudgetState, anomaly_firings, budget_firings, percent_reached
from domain.alerts.messages import anomaly_message, budget_message
from domain.alerts.retry import RetrySchedule
from domain.alerts.rule import AlertRule
from domain.alerts.rule_spec import AlertRuleError, rule_spec
from domain.alerts.signing import webhook_secret
from domain.errors import DomainError

AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
USD = 1_000_000_000


def state(spent: int, limit: int | None = 10 * USD, mode: str | None = "hard", scope: str = "user",
          scope_id: str = "ada", **kwargs) -> BudgetState:
    return BudgetState(scope, scope_id, "month", START, END, spent, limit, mode, **kwargs)


def percent_rule(percent: int, scope: str = "user", scope_id: str | None = "ada"):
    return uuid4(), rule_spec(f"{percent}%", scope, scope_id, {"budget_percent": percent}, ["email"],
                              ["@owner"])


def test_a_percent_rule_fires_at_exactly_its_share_of_the_limit_and_not_a_nano_unit_before() -> None:
    rule = percent_rule(50)
    assert budget_firings(state(5 * USD - 1), [rule]) == []
    [firing] = budget_firings(state(5 * USD), [rule])
    assert firing.reason == "budget_percent" and firing.facts == {"threshold": 50}
    assert firing.period_key == START.isoformat()


@given(percent=st.integers(1, 1000), limit=st.integers(1, 10**15), spent=st.integers(0, 10**16))
def test_any_percent_from_1_to_1000_fires_exactly_when_spend_times_100_reaches_limit_times_percent(
        percent: int, limit: int, spent: int) -> None:
    fired = budget_firings(state(spent, limit), [percent_rule(percent)])
    assert bool(fired) == (spent > 0 and spent * 100 >= limit * percent)


def test_a_spend_rule_fires_without_any_budget_and_a_percent_rule_does_not() -> None:
    spend = (uuid4(), rule_spec("$5", "user", "ada", {"spend_usd": "5"}, ["email"], ["@owner"]))
    fired = budget_firings(state(5 * USD, limit=None, mode=None), [spend, percent_rule(1)])
    assert [f.reason for f in fired] == ["spend"] and fired[0].facts == {"threshold": 5 * USD}


def test_rules_watch_their_scope_a_global_rule_every_scope_and_a_disabled_rule_nothing() -> None:
    mine, bobs = percent_rule(10), percent_rule(10, scope_id="bob")
    everyone = percent_rule(10, "global", None)
    off = (uuid4(), rule_spec("off", "user", "ada", {"budget_percent": 10}, ["email"], ["@owner"],
                              enabled=False))
    fired = budget_firings(state(5 * USD), [mine, bobs, everyone, off])
    assert {f.rule_id for f in fired} == {mine[0], everyone[0]}
    team = budget_firings(state(5 * USD, scope="team", scope_id="ada"), [mine, everyone])
    assert [f.rule_id for f in team] == [everyone[0]]  # a user rule for 'ada' does not watch team 'ada'


def test_an_anomaly_rule_fires_for_its_kind_on_its_scope_or_its_users_keys() -> None:
    rule = (uuid4(), rule_spec("spikes", "user", "ada", {"anomaly": "spike"}, ["email"], ["@admins"]))
    key_spike = AnomalyFacts("i1", "spike", "key", "k1", "ada", {"factor": 3.2}, AT)
    assert [f.period_key for f in anomaly_firings(key_spike, [rule])] == ["incident:i1"]
    assert anomaly_firings(AnomalyFacts("i2", "night", "user", "ada", "ada", {}, AT), [rule]) == []
    assert anomaly_firings(AnomalyFacts("i3", "spike", "key", "k2", "bob", {}, AT), [rule]) == []


def test_percent_reached_is_exact_on_integers() -> None:
    assert percent_reached(333_333_334, 1_000_000_000, 33) and not percent_reached(0, 0, 1)


@pytest.mark.parametrize(("fields", "field"), [
    ({"name": ""}, "name"),
    ({"scope": "org"}, "scope"),
    ({"scope": "global"}, "scope_id"),
    ({"scope_id": None}, "scope_id"),
    ({"scope_id": "a/b"}, "scope_id"),
    ({"trigger": {}}, "trigger"),
    ({"trigger": {"budget_percent": 0}}, "trigger.budget_percent"),
    ({"trigger": {"budget_percent": 1001}}, "trigger.budget_percent"),
    ({"trigger": {"budget_percent": True}}, "trigger.budget_percent"),
    ({"trigger": {"spend_usd": "0"}}, "trigger.spend_usd"),
    ({"trigger": {"spend_usd": "1.0000000001"}}, "trigger.spend_usd"),
    ({"trigger": {"spend_usd": "NaN"}}, "trigger.spend_usd"),
    ({"trigger": {"anomaly": "growth"}}, "trigger.anomaly"),
    ({"scope": "team", "scope_id": "t1", "trigger": {"anomaly": "spike"}}, "scope"),
    ({"channels": ["pager"]}, "channels"),
    ({"recipients": []}, "recipients"),
    ({"recipients": ["not an address"]}, "recipients"),
    ({"webhook_url": "javascript:alert(1)"}, "webhook_url"),
    ({"webhook_url": "https://a:b@example.com"}, "webhook_url"),
    ({"webhook_url": "https://example.com:99999/"}, "webhook_url"),
])
def test_a_rule_that_cannot_be_kept_names_the_field_that_is_wrong(fields: dict, field: str) -> None:
    given_ = {"name": "r", "scope": "user", "scope_id": "ada", "trigger": {"budget_percent": 50},
              "channels": ["email"], "recipients": ["@owner"], **fields}
    with pytest.raises(AlertRuleError) as refused:
        rule_spec(**given_)
    assert refused.value.field == field


def test_spend_is_kept_exactly_in_nano_units() -> None:
    spec = rule_spec("r", "key", "k1", {"spend_usd": " 0.000000001 "}, ["webhook"], [],
                     webhook_url="https://example.com/h")
    assert spec.trigger.spend_nanos == 1


def test_a_rule_records_what_changed_and_refuses_changes_once_deleted() -> None:
    spec = rule_spec("r", "user", "ada", {"budget_percent": 50}, ["email"], ["@owner"])
    rule = AlertRule(rule_id=uuid4(), owner="ada", spec=spec.state(), at=AT)
    rule.change(spec, AT)
    assert [type(e).__name__ for e in rule.collect_events()] == ["AlertRuleCreated"]
    off = rule_spec("r", "user", "ada", {"budget_percent": 60}, ["email"], ["@owner"], enabled=False)
    rule.change(off, AT)
    assert [type(e).__name__ for e in rule.collect_events()] == ["AlertRuleSet", "AlertRuleDisabled"]
    assert rule.spec == off and not rule.enabled
    rule.delete(AT)
    with pytest.raises(DomainError):
        rule.change(spec, AT)


def test_messages_name_scope_spend_limit_period_and_what_happens_next() -> None:
    rule = percent_rule(80)
    for mode, words in (("soft", "nothing is blocked"), ("hard", "requests are refused (HTTP 429) once spend "
                                                                 "reaches the limit of $10.00"),
                        ("grace", "refused (HTTP 429) once spend reaches $11.00")):
        s = state(8_123_456_789, mode=mode, grace_percent=10)
        message = budget_message("eighty", budget_firings(s, [rule])[0], s)
        assert message.subject == "[Meterline] 80% of the budget reached for user ada"
        assert "Spent this period: $8.123456789" in message.text and "Budget: $10.00" in message.text
        assert "2026-03-01T00:00:00+00:00 to 2026-04-01T00:00:00+00:00" in message.text
        assert words in message.text
    facts = AnomalyFacts("i1", "spike", "key", "k1", "ada", {"factor": "3.4"}, AT)
    anomaly = anomaly_message("spikes", facts)
    assert anomaly.subject == "[Meterline] anomaly: spike for key k1" and "factor: 3.4" in anomaly.text


def test_retries_back_off_exponentially_with_jitter_then_dead_letter() -> None:
    schedule = RetrySchedule(max_attempts=4, base_s=2, cap_s=5)
    assert [schedule.delay_s(a, 0.0) for a in (1, 2, 3, 4)] == [1, 2, 2.5, 2.5]
    assert [schedule.delay_s(a, 0.999) for a in (1, 2)] == pytest.approx([1.999, 3.998])
    assert schedule.next_try(1, AT, 0.5) == AT + timedelta(seconds=1.5)
    assert schedule.next_try(4, AT, 0.5) is None and schedule.next_try(1, AT, 0.5, permanent=True) is None


def test_a_webhook_secret_is_derived_per_rule_and_version_and_never_equal_across_them() -> None:
    rule_id = uuid4()
    first = webhook_secret(b"server", rule_id, 1)
    assert first.startswith("whsec_") and first == webhook_secret(b"server", str(rule_id), 1)
    assert len({first, webhook_secret(b"server", rule_id, 2), webhook_secret(b"other", rule_id, 1),
                webhook_secret(b"server", uuid4(), 1)}) == 4


def test_a_notice_board_posts_an_id_once_lists_unread_first_and_acknowledges_only_its_own() -> None:
    from domain.alerts.notices import NoticeBoard
    board = NoticeBoard(user_id="ada", at=AT)
    assert board.post("n1", "first", "text", {}, AT)
    assert not board.post("n1", "first again", "text", {}, AT)  # a retried delivery posts nothing
    assert board.post("n2", "second", "text", {}, AT + timedelta(minutes=1))
    assert board.acknowledge("n2", AT) and not board.acknowledge("someone-elses", AT)
    assert [n["id"] for n in board.listing()] == ["n1", "n2"]


def test_a_webhook_recipient_is_logged_by_its_origin_only():
    from types import SimpleNamespace

    from infra.workers.alerts_worker import shown
    hook = SimpleNamespace(channel="webhook", recipient="https://hooks.slack.com:8443/services/T0/B0/secret?x=1")
    assert shown(hook) == "https://hooks.slack.com:8443"
    assert shown(SimpleNamespace(channel="email", recipient="ana@example.com")) == "ana@example.com"
