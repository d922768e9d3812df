"""What a user may give their own keys: the grant rule, and grants on users and teams."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.errors import DomainError
from domain.grants import Grant, GrantExceededError, effective_grant
from domain.periods import Period
from domain.principals import Role, Team, User
from domain.quota_policy import BudgetPolicy, Mode

AT = datetime(2025, 6, 1, tzinfo=UTC)
DOLLAR = 1_000_000_000


def test_a_grant_nobody_set_allows_every_model_and_leaves_key_budgets_alone() -> None:
    grant = Grant()
    assert grant.allowed_models is None and grant.allows("anything")
    assert grant.refused_models(["*"]) == []
    assert grant.key_budget(None) is None
    soft = BudgetPolicy(limit=1000 * DOLLAR, mode=Mode.SOFT)
    assert grant.key_budget(soft) == soft


def test_the_effective_grant_allows_only_models_both_the_user_and_the_team_were_granted() -> None:
    user = Grant(models=("a", "b", "c"))
    team = Grant(models=("b", "c", "d"))
    assert effective_grant(user, team).allowed_models == frozenset({"b", "c"})
    assert effective_grant(Grant(), team).allowed_models == frozenset({"b", "c", "d"})
    assert effective_grant(user, Grant()).allowed_models == frozenset({"a", "b", "c"})
    assert effective_grant(user, None) == user
    assert effective_grant(Grant(models=("a",)), Grant(models=("b",))).allowed_models == frozenset()


def test_the_smaller_maximum_of_user_and_team_bounds_keys() -> None:
    assert effective_grant(Grant(max_key_limit=10), Grant(max_key_limit=5)).max_key_limit == 5
    assert effective_grant(Grant(max_key_limit=5), Grant(max_key_limit=10)).max_key_limit == 5
    assert effective_grant(Grant(), Grant(max_key_limit=7)).max_key_limit == 7
    assert effective_grant(Grant(max_key_limit=7), Grant()).max_key_limit == 7


def test_the_users_default_budget_wins_over_the_teams_and_the_teams_fills_in() -> None:
    mine = BudgetPolicy(limit=3, period=Period.DAY)
    theirs = BudgetPolicy(limit=4, period=Period.WEEK)
    assert effective_grant(Grant(default_key_budget=mine),
                           Grant(default_key_budget=theirs)).default_key_budget == mine
    assert effective_grant(Grant(), Grant(default_key_budget=theirs)).default_key_budget == theirs


def test_a_default_above_the_effective_maximum_is_lowered_to_a_hard_budget_at_the_maximum() -> None:
    user = Grant(default_key_budget=BudgetPolicy(limit=8, period=Period.WEEK, mode=Mode.SOFT))
    grant = effective_grant(user, Grant(max_key_limit=5))
    assert grant.default_key_budget == BudgetPolicy(limit=5, period=Period.WEEK, mode=Mode.HARD)
    assert grant.key_budget(None) == grant.default_key_budget


def test_a_maximum_without_a_default_gives_a_key_without_a_budget_a_hard_budget_at_the_maximum() -> None:
    assert Grant(max_key_limit=5).key_budget(None) == BudgetPolicy(limit=5, mode=Mode.HARD)


def test_asking_for_all_models_is_refused_unless_all_were_granted() -> None:
    grant = Grant(models=("a", "b"))
    assert grant.refused_models(["*"]) == ["*"]
    assert grant.refused_models(["a", "c", "*"]) == ["c", "*"]
    assert grant.refused_models(["b", "a"]) == []


def test_a_key_budget_above_the_maximum_or_soft_is_refused_and_one_within_it_is_kept() -> None:
    grant = Grant(max_key_limit=10 * DOLLAR)
    within = BudgetPolicy(limit=10 * DOLLAR)
    assert grant.key_budget(within) == within
    with pytest.raises(GrantExceededError, match=r"at most \$10"):
        grant.key_budget(BudgetPolicy(limit=10 * DOLLAR + 1))
    with pytest.raises(GrantExceededError, match="soft"):
        grant.key_budget(BudgetPolicy(limit=DOLLAR, mode=Mode.SOFT))


def test_a_grace_budget_counts_its_allowance_against_the_maximum() -> None:
    grant = Grant(max_key_limit=11 * DOLLAR)
    assert grant.key_budget(BudgetPolicy(limit=10 * DOLLAR, mode=Mode.GRACE, grace_percent=10))
    with pytest.raises(GrantExceededError, match="grace"):
        grant.key_budget(BudgetPolicy(limit=10 * DOLLAR, mode=Mode.GRACE, grace_percent=20))


def test_a_grant_whose_default_exceeds_its_own_maximum_is_refused() -> None:
    with pytest.raises(DomainError, match="default key budget"):
        Grant(default_key_budget=BudgetPolicy(limit=6), max_key_limit=5)
    with pytest.raises(DomainError, match="must not be negative"):
        Grant(max_key_limit=-1)


def test_model_lists_are_kept_sorted_without_repeats_and_a_star_stands_for_all() -> None:
    assert Grant(models=("b", "a", "b")).models == ("a", "b")
    assert Grant(models=("a", "*")).models == ("*",)


def test_a_grant_reads_back_from_its_event_state() -> None:
    grant = Grant(models=("a",), max_key_limit=9,
                  default_key_budget=BudgetPolicy(limit=2, period=Period.DAY, mode=Mode.GRACE,
                                                  grace_percent=5, grace_hours=3))
    assert Grant.from_state(grant.state()) == grant
    assert Grant.from_state(Grant().state()) == Grant()


def test_users_and_teams_start_with_the_open_grant_and_record_each_change() -> None:
    team = Team(team_id="t", name="T", cost_center=None, at=AT)
    user = User(user_id="u", team_id="t", role=Role.USER, email=None, at=AT)
    assert (user.grant, team.grant) == (Grant(), Grant())
    limited = Grant(models=("a",), max_key_limit=5)
    user.change_grant(limited, AT)
    team.change_grant(limited, AT)
    user.change_grant(limited, AT)  # unchanged: nothing recorded
    assert (user.grant, team.grant) == (limited, limited)
    assert [type(e).__name__ for e in user.collect_events()] == ["UserRegistered", "UserGrantChanged"]
    assert [e.TOPIC for e in team.collect_events()][-1] == "meterline.TeamGrantChanged"


def test_a_deactivated_user_cannot_be_granted_anything() -> None:
    user = User(user_id="u", team_id=None, role=Role.USER, email=None, at=AT)
    user.deactivate("left", AT)
    with pytest.raises(DomainError, match="deactivated"):
        user.change_grant(Grant(models=("a",)), AT)
