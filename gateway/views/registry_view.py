"""The gateway's in-memory view of the registry: keys, users, teams, models and prices.

It holds copies of the registry's aggregates and advances them with the stored events
themselves (each event's own mutator), so it can never disagree with a rebuild. The /v1
hot path reads it without I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.grants import Grant, effective_grant
from domain.keys import ApiKey
from domain.pricing import PriceBook
from domain.principals import Team, User
from domain.quota_policy import Scope


@dataclass(frozen=True)
class KeyMatch:
    key: ApiKey
    via_previous_secret: bool


class RegistryView:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aggregates: dict[UUID, Any] = {}
        self._by_hmac: dict[str, UUID] = {}
        self._by_token: dict[str, UUID] = {}
        # What each aggregate put in the two indexes, to take it out again on the next change:
        # it cannot be read back from the old copy, because `event.mutate` changes the copy
        # in place, so the "previous" aggregate is already the new one.
        self._indexed: dict[UUID, tuple[str, ...]] = {}
        self._users: dict[str, User] = {}
        self._teams: dict[str, Team] = {}
        self._models: dict[str, PriceBook] = {}
        self.last_key_use: dict[UUID, datetime] = {}

    # ----- folding events ------------------------------------------------------------------

    def apply(self, event: Any) -> bool:
        """Advances the aggregate an event belongs to; returns False if it is out of order."""
        with self._lock:
            current = self._aggregates.get(event.originator_id)
            version = current.version if current is not None else 0
            if event.originator_version <= version:
                return True  # already applied: redelivery is harmless
            if event.originator_version != version + 1:
                return False  # a gap: the caller reloads the aggregate
            self._put(event.mutate(current))
            return True

    def put(self, aggregate: Any) -> None:
        """Replaces an aggregate with a freshly loaded copy (start-up or gap repair)."""
        with self._lock:
            current = self._aggregates.get(aggregate.id)
            if current is None or aggregate.version >= current.version:
                self._put(aggregate)

    def _put(self, aggregate: Any) -> None:
        self._aggregates[aggregate.id] = aggregate
        if isinstance(aggregate, ApiKey):
            self._index(self._by_hmac, aggregate.id, aggregate.live_hmacs())
        elif isinstance(aggregate, User):
            self._index(self._by_token, aggregate.id, tuple(aggregate.token_hmacs))
            self._users[aggregate.user_id] = aggregate
        elif isinstance(aggregate, Team):
            self._teams[aggregate.team_id] = aggregate
        elif isinstance(aggregate, PriceBook):
            self._models[aggregate.model] = aggregate

    def _index(self, index: dict[str, UUID], owner: UUID, hmacs: tuple[str, ...]) -> None:
        """Makes `hmacs` the only entries of `index` that name `owner`."""
        for h in self._indexed.pop(owner, ()):
            if index.get(h) == owner:
                del index[h]
        for h in hmacs:
            index[h] = owner
        self._indexed[owner] = hmacs

    # ----- queries (no I/O) ----------------------------------------------------------------

    def key_for_secret(self, secret_hmac: str, at: datetime) -> KeyMatch | None:
        """The live key a secret belongs to, honouring a rotation's grace for the old secret."""
        key_id = self._by_hmac.get(secret_hmac)
        key = self._aggregates.get(key_id) if key_id else None
        # The index only narrows the search; the key itself decides (a stale entry opens nothing).
        if key is None or not key.accepts(secret_hmac, at):
            return None
        return KeyMatch(key, secret_hmac != key.secret_hmac)

    def key_holding(self, secret_hmac: str) -> ApiKey | None:
        """The key a secret is or was the current or retired secret of, whatever its state:
        for explaining a refused key (revoked, expired, rotated out), never for admitting one."""
        key = self._aggregates.get(self._by_hmac.get(secret_hmac))  # type: ignore[arg-type]
        return key if isinstance(key, ApiKey) and secret_hmac in key.live_hmacs() else None

    def user_for_token(self, token_hmac: str) -> User | None:
        user_id = self._by_token.get(token_hmac)
        user = self._aggregates.get(user_id) if user_id else None
        return user if user is not None and user.active and token_hmac in user.token_hmacs else None

    def key(self, key_id: UUID) -> ApiKey | None:
        found = self._aggregates.get(key_id)
        return found if isinstance(found, ApiKey) else None

    def api_keys(self, user_id: str | None = None) -> list[ApiKey]:
        return [a for a in list(self._aggregates.values())
                if isinstance(a, ApiKey) and (user_id is None or a.user_id == user_id)]

    def budget_scopes(self) -> list[tuple[Scope, str]]:
        """Every scope a known principal can have a budget in: its keys, users and teams."""
        users = self.users()
        scopes = [(Scope.KEY, str(k.id)) for k in self.api_keys()]
        scopes += [(Scope.USER, u.user_id) for u in users]
        scopes += [(Scope.TEAM, t) for t in {u.team_id for u in users if u.team_id}]
        return scopes

    def user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    def users(self) -> list[User]:
        return list(self._users.values())

    def team(self, team_id: str) -> Team | None:
        return self._teams.get(team_id)

    def effective_grant(self, user_id: str) -> Grant | None:
        """The user's grant narrowed by their team's; None if the user is unknown."""
        user = self._users.get(user_id)
        if user is None:
            return None
        team = self._teams.get(user.team_id) if user.team_id else None
        return effective_grant(user.grant, team.grant if team is not None else None)

    def granted_models(self, user_id: str) -> frozenset[str] | None:
        """The models a user's keys may use under their effective grant; None: every model
        (also for a user this view does not know). For admission: a request needs a model
        its key's own list allows and this allows."""
        user = self._users.get(user_id)
        if user is None:
            return None
        team = self._teams.get(user.team_id) if user.team_id else None
        if user.grant.allowed_models is None and (team is None or team.grant.allowed_models is None):
            return None  # the usual case, on every request: no grant narrows the models
        return effective_grant(user.grant, team.grant if team is not None else None).allowed_models

    def model(self, name: str) -> PriceBook | None:
        return self._models.get(name)

    def models(self) -> list[PriceBook]:
        return list(self._models.values())
