"""A team's terms for its jobs: the customer pricing per job type (domain/job_pricing.py) and
the webhook that hears when a job ends. One aggregate per team, set by admins."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import stable_id
from domain.job_pricing import Rule, rule_of


class TeamJobTerms(Aggregate):
    TOPIC = "meterline.TeamJobTerms"

    class Created(Aggregate.Created):
        TOPIC = "meterline.TeamJobTerms.Created"

    @staticmethod
    def id_for(team_id: str) -> UUID:
        return stable_id("job-terms", team_id)

    @classmethod
    def create_id(cls, team_id: str, at: datetime) -> UUID:
        return cls.id_for(team_id)

    @event("TeamJobTermsOpened", topic="meterline.TeamJobTermsOpened")
    def __init__(self, team_id: str, at: datetime) -> None:
        self.team_id = team_id
        self.job_types: dict[str, dict[str, Any]] = {}
        self.default: dict[str, Any] | None = None
        self.pricing_version = 0
        self.webhook_url: str | None = None
        self.webhook_version = 0

    def rule_for(self, job_type: str) -> tuple[Rule, dict[str, Any]] | None:
        """The rule pricing a job type (its own, else the team's default) and its stored form."""
        stored = self.job_types.get(job_type, self.default)
        if stored is None:
            return None
        return rule_of(stored), {**stored, "version": self.pricing_version,
                                 "job_type": job_type if job_type in self.job_types else None}

    @event("JobPricingSet", topic="meterline.JobPricingSet")
    def set_pricing(self, job_types: dict[str, dict[str, Any]], default: dict[str, Any] | None,
                    at: datetime) -> None:
        self.job_types = dict(job_types)
        self.default = default
        self.pricing_version += 1

    @event("JobWebhookSet", topic="meterline.JobWebhookSet")
    def set_webhook(self, url: str | None, at: datetime) -> None:
        """A new URL (or None: no webhook); each setting is a new signing secret version."""
        self.webhook_url = url
        self.webhook_version += 1


def job_webhook_secret(server_secret: bytes, team_id: str, version: int) -> str:
    """The team's job-webhook signing secret, derived (never stored): "whsec_" + urlsafe-base64 of
    HMAC-SHA256(server secret, "job-webhook:<team id>:<version>"); each URL set is a new version."""
    message = f"job-webhook:{team_id}:{version}".encode()
    digest = hmac.new(server_secret, message, hashlib.sha256).digest()
    return "whsec_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
