"""The alert rule aggregate: set, changed, enabled or disabled, deleted; its webhook secret's version.

The webhook signing secret is never stored: it is derived from the server secret, the rule id
and `secret_version` (`domain/alerts/signing.py`), so rotating it is a new version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.alerts.rule_spec import RuleSpec
from domain.errors import DomainError


class AlertRule(Aggregate):
    TOPIC = "meterline.AlertRule"

    class Created(Aggregate.Created):
        TOPIC = "meterline.AlertRule.Created"

    @classmethod
    def create_id(cls, rule_id: UUID, owner: str | None, spec: dict[str, Any], at: datetime) -> UUID:
        return rule_id

    @event("AlertRuleCreated", topic="meterline.AlertRuleCreated")
    def __init__(self, rule_id: UUID, owner: str | None, spec: dict[str, Any], at: datetime) -> None:
        # owner: the user who made it through /api/alerts; None for an admin's or a default rule
        self.owner = owner
        self.spec_state = spec
        self.created_at = at
        self.secret_version = 1
        self.deleted = False

    @property
    def spec(self) -> RuleSpec:
        return RuleSpec.from_state(self.spec_state)

    @property
    def enabled(self) -> bool:
        return self.spec.enabled and not self.deleted

    def change(self, spec: RuleSpec, at: datetime) -> None:
        """Records what changed: the rule's definition, then whether it is enabled."""
        self._require_live()
        new = spec.state()
        old = self.spec_state
        if {**new, "enabled": None} != {**old, "enabled": None}:
            self._set(spec={**new, "enabled": old["enabled"]}, at=at)
        if new["enabled"] and not old["enabled"]:
            self._enabled(at=at)
        elif not new["enabled"] and old["enabled"]:
            self._disabled(at=at)

    def delete(self, at: datetime) -> None:
        if not self.deleted:
            self._deleted(at=at)

    def rotate_secret(self, at: datetime) -> None:
        self._require_live()
        self._secret_rotated(secret_version=self.secret_version + 1, at=at)

    def _require_live(self) -> None:
        if self.deleted:
            raise DomainError(f"alert rule {self.id} is deleted")

    @event("AlertRuleSet", topic="meterline.AlertRuleSet")
    def _set(self, spec: dict[str, Any], at: datetime) -> None:
        self.spec_state = spec

    @event("AlertRuleEnabled", topic="meterline.AlertRuleEnabled")
    def _enabled(self, at: datetime) -> None:
        self.spec_state = {**self.spec_state, "enabled": True}

    @event("AlertRuleDisabled", topic="meterline.AlertRuleDisabled")
    def _disabled(self, at: datetime) -> None:
        self.spec_state = {**self.spec_state, "enabled": False}

    @event("AlertRuleDeleted", topic="meterline.AlertRuleDeleted")
    def _deleted(self, at: datetime) -> None:
        self.deleted = True

    @event("AlertWebhookSecretRotated", topic="meterline.AlertWebhookSecretRotated")
    def _secret_rotated(self, secret_version: int, at: datetime) -> None:
        self.secret_version = secret_version
