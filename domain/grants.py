"""Grants: which models a user (or team) may use, and the budgets of keys made for them.

A grant bounds the keys created for a principal, whoever creates them: the models a key may
name, the budget a key gets when it asks for none, and the most a key's budget may allow.
A user is held to the intersection of their own grant and their team's (`effective_grant`).
The open grant (every model, no budgets) is what every user and team has until an admin sets
one, so a deployment that never sets a grant behaves as it did before grants existed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from domain.errors import DomainError
from domain.money import usd_text
from domain.periods import Period
from domain.quota_policy import BudgetPolicy, Mode

ALL_MODELS = "*"


class GrantExceededError(DomainError):
    """A key asked for more than its user's grant allows."""


@dataclass(frozen=True)
class Grant:
    # Model names a key may list, sorted; ("*",) is every model, () none at all.
    models: tuple[str, ...] = (ALL_MODELS,)
    # Given to a key created without a budget; None: such a key gets none (unless a maximum).
    default_key_budget: BudgetPolicy | None = None
    # The most a key's budget may ever let it spend per period (its cap: limit plus any grace),
    # in nano-units. None: unbounded. A soft budget never blocks, so it never fits a maximum.
    max_key_limit: int | None = None

    def __post_init__(self) -> None:
        models = (ALL_MODELS,) if ALL_MODELS in self.models else tuple(sorted(set(self.models)))
        object.__setattr__(self, "models", models)
        if self.max_key_limit is not None and self.max_key_limit < 0:
            raise DomainError(f"the maximum key budget must not be negative, got {self.max_key_limit}")
        default = self.default_key_budget
        if default is not None and not fits(default, self.max_key_limit):
            raise DomainError(
                f"the default key budget ({describe(default)}) may spend more than the maximum key "
                f"budget of ${usd_text(self.max_key_limit or 0)}: lower the default, make it hard, "
                "or raise the maximum")

    @property
    def allowed_models(self) -> frozenset[str] | None:
        """The models granted; None means every model."""
        return None if ALL_MODELS in self.models else frozenset(self.models)

    def allows(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models

    def refused_models(self, requested: list[str]) -> list[str]:
        """The entries of a key's model list this grant does not cover ('*' unless all were granted)."""
        return [m for m in requested if not self.allows(m)]

    def key_budget(self, requested: BudgetPolicy | None) -> BudgetPolicy | None:
        """The budget a new key gets: the one asked for if it fits, else the grant's default.

        Raises GrantExceededError if the asked-for budget may spend more than the maximum."""
        if requested is None:
            if self.default_key_budget is not None:
                return self.default_key_budget
            # With a maximum, no key is left without a budget: it gets the maximum, hard.
            return None if self.max_key_limit is None else BudgetPolicy(limit=self.max_key_limit)
        if not fits(requested, self.max_key_limit):
            raise GrantExceededError(
                f"a key budget of {describe(requested)} exceeds the grant: keys may have budgets "
                f"of at most ${usd_text(self.max_key_limit or 0)} per period, hard, or grace with "
                "its allowance included (a soft budget never blocks, so it is not allowed)")
        return requested

    def state(self) -> dict[str, Any]:
        """The grant as plain JSON values, for the event that records it."""
        policy = self.default_key_budget
        return {"models": list(self.models), "max_key_limit": self.max_key_limit,
                "default_key_budget": None if policy is None else {
                    "limit": policy.limit, "period": str(policy.period), "mode": str(policy.mode),
                    "grace_percent": policy.grace_percent, "grace_hours": policy.grace_hours}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Grant:
        policy = state["default_key_budget"]
        default = None if policy is None else BudgetPolicy(
            limit=policy["limit"], period=Period(policy["period"]), mode=Mode(policy["mode"]),
            grace_percent=policy["grace_percent"], grace_hours=policy["grace_hours"])
        return cls(models=tuple(state["models"]), default_key_budget=default,
                   max_key_limit=state["max_key_limit"])


def fits(policy: BudgetPolicy, max_limit: int | None) -> bool:
    """Whether a key budget never lets the key spend more than `max_limit` per period."""
    if max_limit is None:
        return True
    return policy.cap is not None and policy.cap <= max_limit


def describe(policy: BudgetPolicy) -> str:
    grace = f" +{policy.grace_percent}%" if policy.mode is Mode.GRACE else ""
    return f"${usd_text(policy.limit)}{grace} per {policy.period} ({policy.mode})"


def effective_grant(user: Grant, team: Grant | None) -> Grant:
    """What a user may give their keys: their grant narrowed by their team's.

    Models: those both granted. Maximum: the smaller. Default: the user's if set, else the
    team's; if it may spend past the maximum, it becomes a hard budget at the maximum."""
    if team is None:
        return user
    if ALL_MODELS in user.models:
        models = team.models
    elif ALL_MODELS in team.models:
        models = user.models
    else:
        models = tuple(set(user.models) & set(team.models))
    limits = [m for m in (user.max_key_limit, team.max_key_limit) if m is not None]
    max_limit = min(limits) if limits else None
    default = user.default_key_budget or team.default_key_budget
    if default is not None and not fits(default, max_limit):
        default = replace(default, limit=max_limit, mode=Mode.HARD)
    return Grant(models=models, default_key_budget=default, max_key_limit=max_limit)
