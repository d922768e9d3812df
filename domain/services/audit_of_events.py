"""Stored domain events as audit entries: which events are recorded, and which of their fields.

Fields are copied from an allow-list per event, never wholesale: a key's `secret_hmac`, a
user's `token_hmac`, a job's free-form metadata or error text (which may quote a model's
answer) stay out of the trail, and a field added to an event later stays out until it is
listed here. An event whose topic is not listed is still recorded, with no details, so the
trail shows that something happened without copying what it carried.

Per-request usage (`UsageBatchRecorded`, `SpendAccrued`, `JobCallRecorded`) is not recorded:
it stays in analytics, referenced by request id, so the trail grows with admin activity and
budget states rather than with traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from domain.audit import SYSTEM, AuditEntry, format_time
from domain.audit.entry import MAX_SAFE_INTEGER

MAX_ACTOR = 200  # an actor is a short name (`user:<id>`, `admin:<prefix>…`): longer is not one


@dataclass(frozen=True)
class Recorded:
    """How one kind of event is recorded: its action, what it concerns, the fields kept."""

    action: str
    subject: str  # key | user | team | model | budget | job | alert-rule | job-terms | period
    fields: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()  # flattened details left out (a URL whose path may hold a token)


_REGISTRY = {
    "meterline.KeyIssued": Recorded("KeyIssued", "key", (
        "user_id", "team_id", "name", "description", "models", "prefix", "expires_at", "rpm_limit",
        "tpm_limit")),
    "meterline.KeyRotated": Recorded("KeyRotated", "key", ("prefix", "previous_valid_until")),
    "meterline.KeyRevoked": Recorded("KeyRevoked", "key", ("reason",)),
    "meterline.KeyModelsChanged": Recorded("KeyModelsChanged", "key", ("models",)),
    "meterline.KeyExpired": Recorded("KeyExpired", "key"),
    "meterline.TeamCreated": Recorded("TeamCreated", "team", ("team_id", "name", "cost_center")),
    "meterline.TeamChanged": Recorded("TeamChanged", "team", ("name", "cost_center")),
    "meterline.TeamGrantChanged": Recorded("TeamGrantChanged", "team", ("grant",)),
    "meterline.UserRegistered": Recorded("UserRegistered", "user", ("user_id", "team_id", "role", "email")),
    "meterline.UserChanged": Recorded("UserChanged", "user", ("team_id", "role", "email")),
    "meterline.UserTokenIssued": Recorded("UserTokenIssued", "user"),
    "meterline.UserGrantChanged": Recorded("UserGrantChanged", "user", ("grant",)),
    "meterline.UserDeactivated": Recorded("UserDeactivated", "user", ("reason",)),
    "meterline.ModelRegistered": Recorded("ModelRegistered", "model", ("model",)),
    "meterline.PriceSet": Recorded("PriceSet", "model", (
        "version", "effective_from", "input_per_million", "output_per_million",
        "cached_input_per_million", "gpu_cost_per_hour", "bill_failed_requests", "cache_write_per_million",
        "reasoning_per_million")),
    "meterline.ModelEnabled": Recorded("ModelEnabled", "model"),
    "meterline.ModelDisabled": Recorded("ModelDisabled", "model"),
    "meterline.ModelRouteSet": Recorded("ModelRouteSet", "model", ("route",)),
    "meterline.ModelChangedThroughApi": Recorded("ModelChangedThroughApi", "model"),
}
_ALERT_RULES = {  # the alerts application's rules (its deliveries are traffic, not admin state)
    "meterline.AlertRuleCreated": Recorded("AlertRuleCreated", "alert-rule", ("owner", "spec"),
                                           dropped=("spec.webhook_url",)),
    "meterline.AlertRuleSet": Recorded("AlertRuleSet", "alert-rule", ("spec",),
                                       dropped=("spec.webhook_url",)),
    "meterline.AlertRuleEnabled": Recorded("AlertRuleEnabled", "alert-rule"),
    "meterline.AlertRuleDisabled": Recorded("AlertRuleDisabled", "alert-rule"),
    "meterline.AlertRuleDeleted": Recorded("AlertRuleDeleted", "alert-rule"),
    "meterline.AlertWebhookSecretRotated": Recorded("AlertWebhookSecretRotated", "alert-rule",
                                                    ("secret_version",)),
}
_BILLING = {  # month closes; a sealed export by its name and hash, never its bytes
    "meterline.PeriodClosed": Recorded("PeriodClosed", "period", (
        "month", "closed_by", "manifest.requests", "manifest.cost_nanos", "manifest.timezone")),
    "meterline.ExportSealed": Recorded("ExportSealed", "period", ("month", "name", "sha256")),
}
_LEDGER = {
    "meterline.BudgetOpened": Recorded("BudgetOpened", "budget", ("scope", "scope_id", "tz")),
    "meterline.BudgetSet": Recorded("BudgetSet", "budget", (
        "limit", "period", "mode", "grace_percent", "grace_hours", "policy_version")),
    "meterline.BudgetRemoved": Recorded("BudgetRemoved", "budget"),
    "meterline.BudgetThresholdCrossed": Recorded("BudgetThresholdCrossed", "budget",
                                                 ("percent", "spent", "limit")),
    "meterline.BudgetExceeded": Recorded("BudgetExceeded", "budget", ("spent", "limit")),
    "meterline.GracePeriodStarted": Recorded("GracePeriodStarted", "budget", ("ends_at",)),
    "meterline.QuotaBlocked": Recorded("QuotaBlocked", "budget", ("reason",)),
    "meterline.QuotaRestored": Recorded("QuotaRestored", "budget", ("reason",)),
    "meterline.BudgetPeriodRolledOver": Recorded("BudgetPeriodRolledOver", "budget",
                                                 ("previous_start", "new_start", "previous_spent")),
    "meterline.JobCreated": Recorded("JobCreated", "job", ("user_id", "team_id", "job_type")),
    "meterline.JobCompleted": Recorded("JobCompleted", "job", (
        "status", "calls", "cost", "prompt_tokens", "completion_tokens")),
    "meterline.TeamJobTermsOpened": Recorded("TeamJobTermsOpened", "job-terms", ("team_id",)),
    "meterline.JobPricingSet": Recorded("JobPricingSet", "job-terms", ("job_types", "default")),
    "meterline.JobWebhookSet": Recorded("JobWebhookSet", "job-terms"),  # the URL may hold a token
}
RECORDED = {**_REGISTRY, **_LEDGER, **_ALERT_RULES, **_BILLING}
BILLING_TOPICS = tuple(sorted(_BILLING))
# The ledger's log is mostly usage; it is followed for these topics only.
LEDGER_TOPICS = tuple(sorted(_LEDGER))
# The field that names the subject in the event that creates it (later events name only the id).
_NATURAL_ID = {"user": "user_id", "team": "team_id", "model": "model"}

# (subject, aggregate id) -> the subject's natural id (user id, team id, model, "scope:id")
Resolver = Callable[[str, UUID], str | None]


def entry_of(topic: str, event: Any, resolve: Resolver) -> AuditEntry:
    """The audit entry recording one stored domain event (`event` as the mapper decodes it)."""
    spec = RECORDED.get(topic)
    originator = UUID(str(event.originator_id))
    if spec is None:
        action = topic.rsplit(".", 1)[-1] or "DomainEvent"
        return AuditEntry(time=_time(event), actor=actor_of(event), action=action,
                          target=f"aggregate:{originator}", details={"unlisted": True})
    details: dict[str, Any] = {}
    for name in spec.fields:
        found, value = _field(event, name)
        if found:
            details.update(_flat(name, value))
    for name in spec.dropped:
        details.pop(name, None)
    return AuditEntry(time=_time(event), actor=actor_of(event), action=spec.action,
                      target=_target(spec.subject, originator, event, resolve), details=details)


def actor_of(event: Any) -> str:
    """Who asked for the event (`domain/services/acting.py`); `system` for the scheduler's and the
    configuration's events, and for events stored before actors were recorded."""
    actor = getattr(event, "actor", None)
    if isinstance(actor, str) and 0 < len(actor) <= MAX_ACTOR and actor.isprintable():
        return actor
    return SYSTEM


def _field(event: Any, name: str) -> tuple[bool, Any]:
    """An attribute of the event, or one entry of a mapping attribute ("manifest.requests")."""
    first, _, rest = name.partition(".")
    if not hasattr(event, first):
        return False, None
    value = getattr(event, first)
    if rest:
        if not isinstance(value, Mapping) or rest not in value:
            return False, None
        value = value[rest]
    return True, value


def _target(subject: str, originator: UUID, event: Any, resolve: Resolver) -> str:
    if subject in ("key", "job", "alert-rule", "job-terms"):  # their aggregate id is the id the API uses
        return f"{subject}:{originator}"
    if subject == "period":
        return f"period:{getattr(event, 'month', originator)}"
    if subject == "budget":
        if hasattr(event, "scope") and hasattr(event, "scope_id"):
            return f"{_plain(event.scope)}:{event.scope_id}"
        return resolve(subject, originator) or f"budget:{originator}"
    natural = getattr(event, _NATURAL_ID[subject], None) or resolve(subject, originator)
    return f"{subject}:{natural or originator}"


def _time(event: Any) -> datetime:
    for name in ("timestamp", "at"):  # every stored event has an aware timestamp; `at` is the domain's
        at = getattr(event, name, None)
        if isinstance(at, datetime) and at.tzinfo:
            return at
    raise ValueError(f"event {type(event).__name__} carries no timezone-aware time")


def _flat(name: str, value: Any) -> dict[str, Any]:
    """One detail per scalar; a nested object (a grant) as dotted names, one level deep each."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flat(f"{name}.{key}", inner))
        return flat
    return {name: _plain(value)}


def _plain(value: Any) -> str | int | bool | None:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, int):  # nano-amounts past 2**53 are written as text, not rounded
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(_plain(v)) for v in value)
    return str(value)
