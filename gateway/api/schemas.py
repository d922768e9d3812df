"""Request bodies of the management API; unknown fields are refused so typos are caught."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from domain.periods import Period
from domain.principals import Role
from domain.quota_policy import Mode

Money = Decimal | int | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewUser(Strict):
    user_id: str = Field(min_length=1, max_length=200)
    team_id: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role = Role.USER
    email: str | None = Field(default=None, max_length=320)


class NewTeam(Strict):
    team_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    cost_center: str | None = Field(default=None, max_length=200)


class BudgetBody(Strict):
    limit_usd: Money
    period: Period = Period.MONTH
    mode: Mode = Mode.HARD
    grace_percent: int = Field(default=10, ge=0, le=1000)
    grace_hours: int | None = Field(default=None, gt=0, le=24 * 366)


class NewKey(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    models: list[str] = Field(min_length=1, max_length=200)
    budget_usd: Money | None = None
    budget_mode: Mode = Mode.HARD
    expires_at: datetime | None = None
    rpm_limit: int | None = Field(default=None, gt=0)
    tpm_limit: int | None = Field(default=None, gt=0)
    user_id: str | None = None


class RotateBody(Strict):
    grace_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)


class NewJob(Strict):
    job_type: str = Field(min_length=1, max_length=200)
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)
    user_id: str | None = None


class JobDone(Strict):
    status: str = Field(pattern="^(completed|failed)$")
    error_message: str | None = Field(default=None, max_length=4000)
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)
