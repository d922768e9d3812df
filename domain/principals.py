"""Users and teams: who spends, and whose cost centre pays."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import PrincipalInactiveError
from domain.grants import Grant
from domain.ids import stable_id


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


class Team(Aggregate):
    TOPIC = "meterline.Team"
    # A class default, not set in __init__: teams stored before grants existed load open.
    grant = Grant()

    class Created(Aggregate.Created):
        TOPIC = "meterline.Team.Created"

    @staticmethod
    def id_for(team_id: str) -> UUID:
        return stable_id("team", team_id)

    @classmethod
    def create_id(cls, team_id: str, name: str, cost_center: str | None, at: datetime) -> UUID:
        return cls.id_for(team_id)

    @event("TeamCreated", topic="meterline.TeamCreated")
    def __init__(self, team_id: str, name: str, cost_center: str | None, at: datetime) -> None:
        self.team_id = team_id
        self.name = name
        self.cost_center = cost_center

    def rename(self, name: str, cost_center: str | None, at: datetime) -> None:
        if (name, cost_center) != (self.name, self.cost_center):
            self._changed(name=name, cost_center=cost_center, at=at)

    def change_grant(self, grant: Grant, at: datetime) -> None:
        if grant != self.grant:
            self._grant_changed(grant=grant.state(), at=at)

    @event("TeamChanged", topic="meterline.TeamChanged")
    def _changed(self, name: str, cost_center: str | None, at: datetime) -> None:
        self.name = name
        self.cost_center = cost_center

    @event("TeamGrantChanged", topic="meterline.TeamGrantChanged")
    def _grant_changed(self, grant: dict, at: datetime) -> None:
        self.grant = Grant.from_state(grant)


class User(Aggregate):
    TOPIC = "meterline.User"
    # A class default, not set in __init__: users stored before grants existed load open.
    grant = Grant()

    class Created(Aggregate.Created):
        TOPIC = "meterline.User.Created"

    @staticmethod
    def id_for(user_id: str) -> UUID:
        return stable_id("user", user_id)

    @classmethod
    def create_id(cls, user_id: str, team_id: str | None, role: Role, email: str | None,
                  at: datetime) -> UUID:
        return cls.id_for(user_id)

    @event("UserRegistered", topic="meterline.UserRegistered")
    def __init__(self, user_id: str, team_id: str | None, role: Role, email: str | None,
                 at: datetime) -> None:
        self.user_id = user_id
        self.team_id = team_id
        self.role = Role(role)
        self.email = email
        self.active = True
        self.token_hmacs: list[str] = []

    def change(self, team_id: str | None, role: Role, email: str | None, at: datetime) -> None:
        self._require_active()
        if (team_id, Role(role), email) != (self.team_id, self.role, self.email):
            self._changed(team_id=team_id, role=str(role), email=email, at=at)

    def issue_token(self, token_hmac: str, at: datetime) -> None:
        self._require_active()
        self._token_issued(token_hmac=token_hmac, at=at)

    def change_grant(self, grant: Grant, at: datetime) -> None:
        self._require_active()
        if grant != self.grant:
            self._grant_changed(grant=grant.state(), at=at)

    def deactivate(self, reason: str, at: datetime) -> None:
        if self.active:
            self._deactivated(reason=reason, at=at)

    def _require_active(self) -> None:
        if not self.active:
            raise PrincipalInactiveError(f"user {self.user_id!r} is deactivated")

    @event("UserChanged", topic="meterline.UserChanged")
    def _changed(self, team_id: str | None, role: str, email: str | None, at: datetime) -> None:
        self.team_id, self.role, self.email = team_id, Role(role), email

    @event("UserTokenIssued", topic="meterline.UserTokenIssued")
    def _token_issued(self, token_hmac: str, at: datetime) -> None:
        self.token_hmacs.append(token_hmac)

    @event("UserGrantChanged", topic="meterline.UserGrantChanged")
    def _grant_changed(self, grant: dict, at: datetime) -> None:
        self.grant = Grant.from_state(grant)

    @event("UserDeactivated", topic="meterline.UserDeactivated")
    def _deactivated(self, reason: str, at: datetime) -> None:
        self.active = False
        self.token_hmacs = []
