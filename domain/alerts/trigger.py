"""A rule that fired for a scope in a period, and each message it sends (one per channel and
recipient) with its delivery attempts.

The trigger's id is derived from (rule, scope, scope id, period), so a second trigger for the
same period is refused by the store: once across restarts, redelivery and several workers.
A delivery is claimed before each attempt (a lease, recorded), so two workers never send it
at the same time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import stable_id

PENDING, SENT, DEAD = "pending", "sent", "dead_lettered"


class AlertTrigger(Aggregate):
    TOPIC = "meterline.AlertTrigger"

    class Created(Aggregate.Created):
        TOPIC = "meterline.AlertTrigger.Created"

    @staticmethod
    def id_for(rule_id: UUID | str, scope: str, scope_id: str, period_key: str) -> UUID:
        return stable_id("alert-triggered", str(rule_id), scope, scope_id, period_key)

    @classmethod
    def create_id(cls, rule_id: UUID, scope: str, scope_id: str, period_key: str, reason: str,
                  subject: str, facts: dict[str, Any], at: datetime) -> UUID:
        return cls.id_for(rule_id, scope, scope_id, period_key)

    @event("AlertTriggered", topic="meterline.AlertTriggered")
    def __init__(self, rule_id: UUID, scope: str, scope_id: str, period_key: str, reason: str,
                 subject: str, facts: dict[str, Any], at: datetime) -> None:
        self.rule_id, self.scope, self.scope_id = rule_id, scope, scope_id
        self.period_key, self.reason, self.subject = period_key, reason, subject
        self.facts, self.at = facts, at


class Delivery(Aggregate):
    TOPIC = "meterline.AlertDelivery"

    class Created(Aggregate.Created):
        TOPIC = "meterline.AlertDelivery.Created"

    @staticmethod
    def id_for(trigger_id: UUID, channel: str, recipient: str) -> UUID:
        return stable_id("alert-delivery", str(trigger_id), channel, recipient)

    @classmethod
    def create_id(cls, trigger_id: UUID, rule_id: UUID, channel: str, recipient: str, subject: str,
                  body: dict[str, Any], at: datetime) -> UUID:
        return cls.id_for(trigger_id, channel, recipient)

    @event("NotificationScheduled", topic="meterline.NotificationScheduled")
    def __init__(self, trigger_id: UUID, rule_id: UUID, channel: str, recipient: str, subject: str,
                 body: dict[str, Any], at: datetime) -> None:
        self.trigger_id, self.rule_id, self.channel, self.recipient = trigger_id, rule_id, channel, recipient
        self.subject, self.body, self.scheduled_at = subject, body, at
        self.status = PENDING
        self.attempts = 0
        self.next_at: datetime | None = at
        self.leased_until: datetime | None = None
        self.last_error: str | None = None
        self.finished_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        return (self.status == PENDING and self.next_at is not None and self.next_at <= now
                and (self.leased_until is None or self.leased_until <= now))

    def claim(self, now: datetime, lease: timedelta) -> bool:
        """Starts an attempt if the delivery is due; the lease keeps other workers off it until
        it ends (a worker that died mid-attempt leaves it to be tried again then)."""
        if not self.due(now):
            return False
        self._attempt_started(attempt=self.attempts + 1, leased_until=now + lease, at=now)
        return True

    def succeed(self, now: datetime) -> None:
        self._sent(attempt=self.attempts, at=now)

    def fail(self, error: str, permanent: bool, next_at: datetime | None, now: datetime) -> None:
        self._failed(attempt=self.attempts, error=error[:1000], permanent=permanent, next_at=next_at,
                     dead_lettered=next_at is None, at=now)

    @event("DeliveryAttemptStarted", topic="meterline.DeliveryAttemptStarted")
    def _attempt_started(self, attempt: int, leased_until: datetime, at: datetime) -> None:
        self.attempts = attempt
        self.leased_until = leased_until

    @event("NotificationSent", topic="meterline.NotificationSent")
    def _sent(self, attempt: int, at: datetime) -> None:
        self.status, self.finished_at, self.next_at, self.leased_until = SENT, at, None, None

    @event("NotificationFailed", topic="meterline.NotificationFailed")
    def _failed(self, attempt: int, error: str, permanent: bool, next_at: datetime | None,
                dead_lettered: bool, at: datetime) -> None:
        self.last_error, self.next_at, self.leased_until = error, next_at, None
        if dead_lettered:
            self.status, self.finished_at = DEAD, at
