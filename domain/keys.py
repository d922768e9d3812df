"""API keys: only an HMAC of the secret is ever recorded; the secret is shown once."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import KeyNotUsableError
from domain.periods import require_aware


class KeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ApiKey(Aggregate):
    TOPIC = "meterline.ApiKey"

    class Created(Aggregate.Created):
        TOPIC = "meterline.ApiKey.Created"

    @classmethod
    def create_id(cls, key_id: UUID) -> UUID:
        return key_id

    @event("KeyIssued", topic="meterline.KeyIssued")
    def __init__(self, key_id: UUID, user_id: str, team_id: str | None, name: str, description: str,
                 models: list[str], prefix: str, secret_hmac: str, expires_at: datetime | None,
                 rpm_limit: int | None, tpm_limit: int | None, at: datetime) -> None:
        self.user_id = user_id
        self.team_id = team_id
        self.name = name
        self.description = description
        self.models = list(models)
        self.prefix = prefix
        self.secret_hmac = secret_hmac
        self.previous_hmac: str | None = None
        self.previous_valid_until: datetime | None = None
        self.expires_at = expires_at
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.issued_at = at
        self.status = KeyStatus.ACTIVE

    def usable_at(self, at: datetime) -> bool:
        return self.status is KeyStatus.ACTIVE and (self.expires_at is None or at < self.expires_at)

    def accepts(self, secret_hmac: str, at: datetime) -> bool:
        """Whether a presented secret opens this key at `at`: the current secret, or the one
        the last rotation retired until that rotation's grace ends; nothing while unusable."""
        return self.usable_at(at) and (secret_hmac == self.secret_hmac
                                       or self.in_grace(secret_hmac, at))

    def in_grace(self, secret_hmac: str, at: datetime) -> bool:
        """Whether `secret_hmac` is the retired secret and its grace has not ended at `at`.

        Only the last rotation's secret has a grace: each rotation overwrites the slot, so a
        secret retired earlier can never come back, whatever grace a later rotation gives."""
        return (self.previous_hmac is not None and secret_hmac == self.previous_hmac
                and self.previous_valid_until is not None and at < self.previous_valid_until)

    def live_hmacs(self) -> tuple[str, ...]:
        """The secrets that can open the key at some time, for an index; `accepts` decides."""
        return (self.secret_hmac,) + ((self.previous_hmac,) if self.previous_hmac else ())

    def allows_model(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def rotate(self, prefix: str, secret_hmac: str, at: datetime, grace_seconds: int = 0) -> None:
        """Replaces the secret; the old one dies now, or after `grace_seconds`."""
        self._require_usable(at)
        valid_until = at + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
        self._rotated(prefix=prefix, secret_hmac=secret_hmac, previous_valid_until=valid_until,
                      at=at)

    def revoke(self, reason: str, at: datetime) -> None:
        if self.status is not KeyStatus.REVOKED:
            self._revoked(reason=reason, at=at)

    def change_models(self, models: list[str], at: datetime) -> None:
        self._require_usable(at)
        if sorted(models) != sorted(self.models):
            self._models_changed(models=list(models), at=at)

    def expire(self, at: datetime) -> None:
        """Records expiry once its time has come (the scheduler calls this)."""
        if (self.status is KeyStatus.ACTIVE and self.expires_at is not None
                and require_aware(at) >= self.expires_at):
            self._expired(at=at)

    def _require_usable(self, at: datetime) -> None:
        if not self.usable_at(at):
            raise KeyNotUsableError(f"key {self.prefix}… is {self.status_at(at)}; issue a new key")

    def status_at(self, at: datetime) -> KeyStatus:
        if self.status is KeyStatus.ACTIVE and self.expires_at is not None and at >= self.expires_at:
            return KeyStatus.EXPIRED
        return self.status

    @event("KeyRotated", topic="meterline.KeyRotated")
    def _rotated(self, prefix: str, secret_hmac: str, previous_valid_until: datetime | None,
                 at: datetime) -> None:
        self.previous_hmac = self.secret_hmac if previous_valid_until else None
        self.previous_valid_until = previous_valid_until
        self.prefix = prefix
        self.secret_hmac = secret_hmac

    @event("KeyRevoked", topic="meterline.KeyRevoked")
    def _revoked(self, reason: str, at: datetime) -> None:
        self.status = KeyStatus.REVOKED

    @event("KeyModelsChanged", topic="meterline.KeyModelsChanged")
    def _models_changed(self, models: list[str], at: datetime) -> None:
        self.models = models

    @event("KeyExpired", topic="meterline.KeyExpired")
    def _expired(self, at: datetime) -> None:
        self.status = KeyStatus.EXPIRED


