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
        previous = self._aggregates.get(aggregate.id)
        self._aggregates[aggregate.id] = aggregate
        if isinstance(aggregate, ApiKey):
            if previous is not None:
                for h in (previous.secret_hmac, previous.previous_hmac):
                    self._by_hmac.pop(h, None)
            self._by_hmac[aggregate.secret_hmac] = aggregate.id
            if aggregate.previous_hmac:
                self._by_hmac[aggregate.previous_hmac] = aggregate.id
        elif isinstance(aggregate, User):
            if previous is not None:
                for h in previous.token_hmacs:
                    self._by_token.pop(h, None)
            for h in aggregate.token_hmacs:
                self._by_token[h] = aggregate.id
            self._users[aggregate.user_id] = aggregate
        elif isinstance(aggregate, Team):
            self._teams[aggregate.team_id] = aggregate
        elif isinstance(aggregate, PriceBook):
            self._models[aggregate.model] = aggregate

    # ----- queries (no I/O) ----------------------------------------------------------------

    def key_for_secret(self, secret_hmac: str, at: datetime) -> KeyMatch | None:
        """The live key a secret belongs to, honouring a rotation's grace for the old secret."""
        key_id = self._by_hmac.get(secret_hmac)
        key = self._aggregates.get(key_id) if key_id else None
        if key is None or not key.usable_at(at):
            return None
        if secret_hmac == key.secret_hmac:
            return KeyMatch(key, False)
        if key.previous_valid_until is not None and at < key.previous_valid_until:
            return KeyMatch(key, True)
        return None

    def user_for_token(self, token_hmac: str) -> User | None:
        user_id = self._by_token.get(token_hmac)
        user = self._aggregates.get(user_id) if user_id else None
        return user if user is not None and user.active else None

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

    def model(self, name: str) -> PriceBook | None:
        return self._models.get(name)

    def models(self) -> list[PriceBook]:
        return list(self._models.values())
