"""The registry application: teams, users, API keys and the model price books.

Its log is small (people and configuration change rarely), so gateways fold all of it
into memory at start-up and follow it afterwards. Its events carry who asked for them when a
command ran `as_actor` (`acting.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application

from domain.credentials import display_prefix
from domain.errors import DomainError
from domain.grants import Grant, GrantExceededError, effective_grant
from domain.keys import ApiKey
from domain.ports.clock import Clock
from domain.pricing import Price, PriceBook
from domain.principals import Role, Team, User
from domain.services.acting import RecordsActor


class NotFoundError(DomainError):
    """A command named a team, user, key or model that does not exist."""


class Registry(RecordsActor, Application):
    name = "registry"
    log_section_size = 1000

    def __init__(self, clock: Clock, env: dict[str, Any] | None = None) -> None:
        super().__init__(env)
        self.clock = clock

    # ----- teams and users ---------------------------------------------------------------

    def create_team(self, team_id: str, name: str, cost_center: str | None = None) -> Team:
        """Creates a team, or updates its name and cost centre if it exists."""
        now = self.clock.now()
        team = self._find(Team, Team.id_for(team_id))
        if team is None:
            team = Team(team_id=team_id, name=name, cost_center=cost_center, at=now)
        else:
            team.rename(name, cost_center, now)
        self.save(team)
        return team

    def register_user(self, user_id: str, role: Role = Role.USER, team_id: str | None = None,
                      email: str | None = None) -> User:
        """Registers a user, or updates role, team and e-mail of an active one."""
        now = self.clock.now()
        if team_id is not None:
            self.team(team_id)
        user = self._find(User, User.id_for(user_id))
        if user is None:
            user = User(user_id=user_id, team_id=team_id, role=Role(role), email=email, at=now)
        else:
            user.change(team_id, Role(role), email, now)
        self.save(user)
        return user

    def issue_user_token(self, user_id: str, token_hmac: str) -> None:
        user = self.user(user_id)
        user.issue_token(token_hmac, self.clock.now())
        self.save(user)

    def grant_user(self, user_id: str, grant: Grant) -> User:
        """Replaces what an active user may give the keys created for them."""
        user = self.user(user_id)
        user.change_grant(grant, self.clock.now())
        self.save(user)
        return user

    def grant_team(self, team_id: str, grant: Grant) -> Team:
        """Replaces what the team's users may give their keys (narrowing their own grants)."""
        team = self.team(team_id)
        team.change_grant(grant, self.clock.now())
        self.save(team)
        return team

    def deactivate_user(self, user_id: str, reason: str) -> list[UUID]:
        """Offboards a user: deactivated and every live key revoked, in one transaction."""
        now = self.clock.now()
        user = self.user(user_id)
        user.deactivate(reason, now)
        revoked = [key for key in self.keys_of(user_id) if key.status_at(now) == "active"]
        for key in revoked:
            key.revoke(f"user offboarded: {reason}", now)
        self.save(user, *revoked)
        return [key.id for key in revoked]

    # ----- keys ----------------------------------------------------------------------------

    def issue_key(self, user_id: str, name: str, models: list[str], secret_hmac: str,
                  secret: str, description: str = "", expires_at: datetime | None = None,
                  rpm_limit: int | None = None, tpm_limit: int | None = None) -> ApiKey:
        """Issues a key for an active user; only the HMAC and a short prefix are recorded."""
        user = self.user(user_id)
        if not user.active:
            raise DomainError(f"user {user_id!r} is deactivated and cannot get keys")
        for model in models:
            if model != "*":
                self.price_book(model)
        refused = self.effective_grant(user_id).refused_models(models)
        if refused:  # the gateway checks first with a fuller message; this holds under races
            raise GrantExceededError(f"models {refused} are not granted to user {user_id!r}")
        key = ApiKey(user_id=user_id, team_id=user.team_id, name=name, description=description,
                     models=models, prefix=display_prefix(secret), secret_hmac=secret_hmac,
                     expires_at=expires_at, rpm_limit=rpm_limit, tpm_limit=tpm_limit,
                     at=self.clock.now(), key_id=uuid4())
        self.save(key)
        return key

    def rotate_key(self, key_id: UUID, secret_hmac: str, secret: str,
                   grace_seconds: int = 0) -> ApiKey:
        key = self.key(key_id)
        key.rotate(display_prefix(secret), secret_hmac, self.clock.now(), grace_seconds)
        self.save(key)
        return key

    def revoke_key(self, key_id: UUID, reason: str = "revoked by owner") -> ApiKey:
        key = self.key(key_id)
        key.revoke(reason, self.clock.now())
        self.save(key)
        return key

    def change_key_models(self, key_id: UUID, models: list[str]) -> ApiKey:
        key = self.key(key_id)
        key.change_models(models, self.clock.now())
        self.save(key)
        return key

    def expire_keys(self, keys: Iterable[ApiKey]) -> int:
        """Records expiry of every given key whose time has come; returns how many.

        The given keys only say which to look at (they may be a read model's copies, which
        must change only through stored events): each is loaded afresh before it expires."""
        now = self.clock.now()
        due = [k.id for k in keys if k.status == "active" and k.expires_at and now >= k.expires_at]
        fresh = [key for key in (self.key(key_id) for key_id in due)
                 if key.status == "active" and key.expires_at and now >= key.expires_at]
        for key in fresh:
            key.expire(now)
        if fresh:
            self.save(*fresh)
        return len(fresh)

    # ----- models and prices ---------------------------------------------------------------

    def set_price(self, model: str, *, input_per_million: int, output_per_million: int,
                  cached_input_per_million: int | None = None,
                  gpu_cost_per_hour: int | None = None, bill_failed_requests: bool = False,
                  effective_from: datetime | None = None, cache_write_per_million: int | None = None,
                  reasoning_per_million: int | None = None) -> Price:
        """Registers the model if new and records a price version if the terms changed."""
        book = self._find(PriceBook, PriceBook.id_for(model)) or PriceBook(model=model)
        price = book.set_price(effective_from=effective_from or self.clock.now(),
                               input_per_million=input_per_million,
                               output_per_million=output_per_million,
                               cached_input_per_million=cached_input_per_million,
                               gpu_cost_per_hour=gpu_cost_per_hour,
                               bill_failed_requests=bill_failed_requests,
                               cache_write_per_million=cache_write_per_million,
                               reasoning_per_million=reasoning_per_million)
        self.save(book)
        return price

    def change_model(self, model: str, *, enabled: bool | None = None,
                     route: dict[str, Any] | None = None, price: dict[str, Any] | None = None,
                     effective_from: datetime | None = None) -> PriceBook:
        """The catalogue API's change: enable or disable, route, a new price version, in one save.

        A model it changes is marked changed through the API, after which the config file no
        longer decides it (`infra.container.sync_config` says so at start). A new model needs a
        price; a price takes effect now or later, never in the past (past costs never change)."""
        now = self.clock.now()
        start = effective_from or now
        if start < now:
            raise DomainError(f"a price takes effect now or later, not {start.isoformat()}: past costs "
                              "are never re-rated (GET /api/admin/reports/rerate shows a period under "
                              "other prices)")
        book = self._find(PriceBook, PriceBook.id_for(model))
        if book is None:
            if price is None:
                raise DomainError(f"model {model!r} is new: give its price (input and output per million)")
            book = PriceBook(model=model)
        if route is not None and route != (book.route or {}):
            book.set_route(route)
        if price is not None:
            book.set_price(effective_from=start, **price)
        if enabled is not None and enabled != book.enabled:
            book.enable() if enabled else book.disable()
        if book.pending_events:
            book.mark_changed_through_api(at=now)
            self.save(book)
        return book

    def set_model_enabled(self, model: str, enabled: bool) -> None:
        book = self.price_book(model)
        if enabled != book.enabled:
            book.enable() if enabled else book.disable()
            self.save(book)

    # ----- queries -------------------------------------------------------------------------

    def team(self, team_id: str) -> Team:
        return self._get(Team, Team.id_for(team_id), f"team {team_id!r}")

    def user(self, user_id: str) -> User:
        return self._get(User, User.id_for(user_id), f"user {user_id!r}")

    def effective_grant(self, user_id: str) -> Grant:
        """The user's grant narrowed by their team's (`domain.grants.effective_grant`)."""
        user = self.user(user_id)
        return effective_grant(user.grant, self.team(user.team_id).grant if user.team_id else None)

    def key(self, key_id: UUID) -> ApiKey:
        return self._get(ApiKey, key_id, f"key {key_id}")

    def price_book(self, model: str) -> PriceBook:
        return self._get(PriceBook, PriceBook.id_for(model), f"model {model!r}")

    def find_price_book(self, model: str) -> PriceBook | None:
        return self._find(PriceBook, PriceBook.id_for(model))

    def keys_of(self, user_id: str) -> list[ApiKey]:
        """Every key ever issued to a user, found by following the registry's log."""
        keys = [self.key(i) for i in self._originators("meterline.KeyIssued")]
        return [k for k in keys if k.user_id == user_id]

    def _originators(self, topic: str, page: int = 1000) -> list[UUID]:
        found: list[UUID] = []
        start = 1
        while batch := self.notification_log.select(start=start, limit=page, topics=[topic]):
            found.extend(n.originator_id for n in batch)
            start = batch[-1].id + 1
        return found

    def _find(self, cls: type, aggregate_id: UUID) -> Any:
        try:
            found = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(found, cls):
            raise DomainError(f"id {aggregate_id} names a {type(found).__name__}, not {cls.__name__}")
        return found

    def _get(self, cls: type, aggregate_id: UUID, what: str) -> Any:
        found = self._find(cls, aggregate_id)
        if found is None:
            raise NotFoundError(f"{what} does not exist")
        return found
