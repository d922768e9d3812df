"""Why a /v1 request was refused: its decision record, and the count of those not kept.

A record names the request, the principals, the model, the rule that refused it and the
facts the rule looked at (for a quota refusal: every scope checked, with its limit, mode,
spent, reserved and policy version, and which one decided). It never holds a secret, a
key's HMAC, a prompt or a completion. Under a flood only the first refusals of each key
and rule in a minute are kept whole; the rest are counted (`RefusalsCounted`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import stable_id
from domain.quota_policy import Decision, Mode, Verdict


class Rule(StrEnum):
    HARD_CAP = "hard_cap"                  # a hard budget would pass its limit
    GRACE_CAP = "grace_cap"                # a grace budget would pass limit + grace allowance
    GRACE_WINDOW = "grace_window_over"     # a grace budget's window in hours is over
    RATE_LIMIT = "rate_limit"
    MISSING_KEY = "missing_key"
    UNKNOWN_KEY = "unknown_key"
    KEY_REVOKED = "key_revoked"
    KEY_EXPIRED = "key_expired"
    KEY_ROTATED_OUT = "key_rotated_out"    # a secret a rotation retired, its grace over
    MODEL_OUT_OF_SCOPE = "model_out_of_scope"
    MODEL_NOT_GRANTED = "model_not_granted"
    MODEL_UNKNOWN = "model_unknown"
    INVALID_REQUEST = "invalid_request"    # the body itself (400/413): code says which


def quota_rule(decision: Decision) -> Rule:
    """The rule a refusing quota decision applied."""
    if decision.mode is Mode.GRACE:
        return Rule.GRACE_WINDOW if "grace window" in decision.reason else Rule.GRACE_CAP
    return Rule.HARD_CAP


def scope_facts(decision: Decision, deciding: Decision) -> dict[str, Any]:
    """One scope a quota decision checked, as the record keeps it (money in nano-units)."""
    return {"scope": str(decision.scope), "id": decision.scope_id, "verdict": str(decision.verdict),
            "limit": decision.limit, "cap": decision.cap, "mode": str(decision.mode),
            "spent": decision.spent, "reserved": decision.reserved, "requested": decision.requested,
            "policy_version": decision.policy_version,
            "deciding": (decision.scope, decision.scope_id) == (deciding.scope, deciding.scope_id)}


def quota_details(deciding: Decision, checked: tuple[Decision, ...]) -> dict[str, Any]:
    """What a quota refusal's record says beyond its rule: every scope checked, the decider."""
    return {"scopes": [scope_facts(d, deciding) for d in checked or (deciding,)],
            "deciding_scope": f"{deciding.scope}:{deciding.scope_id}",
            "policy_version": deciding.policy_version,
            "waited_on_reservations": deciding.waits_on_reserved,
            "refused_scopes": sum(1 for d in checked if d.verdict is Verdict.REFUSE)}


class RefusalRecord(Aggregate):
    """One refused request. Its id derives from the request id, so it is found in one read."""

    TOPIC = "meterline.RefusalRecord"

    class Created(Aggregate.Created):
        TOPIC = "meterline.RefusalRecord.Created"

    @staticmethod
    def id_for(request_id: str) -> UUID:
        return stable_id("refusal", request_id)

    @classmethod
    def create_id(cls, request_id: str) -> UUID:
        return cls.id_for(request_id)

    @event("RequestRefused", topic="meterline.RequestRefused")
    def __init__(self, request_id: str, at: datetime, status: int, code: str | None, rule: str,
                 message: str, key_id: str | None, user_id: str | None, team_id: str | None,
                 model: str | None, details: dict[str, Any]) -> None:
        self.request_id = request_id
        self.at = at
        self.status = status
        self.code = code
        self.rule = rule
        self.message = message
        self.key_id = key_id
        self.user_id = user_id
        self.team_id = team_id
        self.model = model
        self.details = details

    def describe(self) -> dict[str, Any]:
        """The record as `explain` shows it."""
        return {"request_id": self.request_id, "outcome": "refused", "time": self.at.isoformat(),
                "status": self.status, "code": self.code, "rule": self.rule, "message": self.message,
                "key_id": self.key_id, "user_id": self.user_id, "team_id": self.team_id,
                "model": self.model, **self.details}


class RefusalsCounted(Aggregate):
    """Refusals of one key (or of no known key) and rule in one minute that were counted but
    not recorded one by one, because that minute already held as many records as kept."""

    TOPIC = "meterline.RefusalCount"

    class Created(Aggregate.Created):
        TOPIC = "meterline.RefusalCount.Created"

    @event("RefusalsCounted", topic="meterline.RefusalsCounted")
    def __init__(self, minute: datetime, key_id: str | None, rule: str, count: int) -> None:
        self.minute = minute
        self.key_id = key_id
        self.rule = rule
        self.count = count
