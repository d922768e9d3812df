"""Request bodies of the management API; unknown fields are refused so typos are caught.

What a field may hold, for every route alike:
- `Id` (a new user's or team's id): `domain.ids.ID_RULE`.
- `Label` (names, e-mail, cost centre, job type): one line of at most 200 characters, no
  control characters, lone surrogates or bidi controls (they spoof what a console shows).
- `Note` (a key's description): the same, but tabs and line breaks are allowed.
- `Instant` (every date): ISO 8601 or Unix seconds, in [2000-01-01, 2200-01-01) UTC; a date
  without an offset is UTC. Returned in UTC, so comparing and storing it never overflows.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from domain.ids import ID_MAX_LENGTH, ID_PATTERN, ID_RULE, is_valid_id
from domain.periods import Period
from domain.principals import Role
from domain.quota_policy import Mode

Money = Decimal | int | str

# ClickHouse's DateTime64 ends in 2299; two centuries of keys and reports is enough.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
DATE_RULE = (f"a date and time from {EARLIEST.date()} to before {LATEST.date()} (UTC), "
             "ISO 8601 such as '2025-06-30T12:00:00Z'; without an offset it is UTC")
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC) if it lies in [EARLIEST, LATEST); ValueError otherwise."""
    # The local year is checked before converting: converting year 1 or 9999 overflows.
    if not EARLIEST.year - 1 <= value.year <= LATEST.year:
        raise ValueError(f"must be {DATE_RULE}")
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be {DATE_RULE}")
    return value


def _id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"must be {ID_RULE}; got {value!r}")
    return value


def _text(value: str, allowed: str = "") -> str:
    for char in value:
        if char in allowed:
            continue
        if char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(f"must not contain control or bidi characters such as {char!r}; "
                             "remove it")
    return value


def _note(value: str) -> str:
    return _text(value, "\t\n\r")


# The id's constraints are for the schema only: `_id` checks them all with one message.
Id = Annotated[str, AfterValidator(_id), Field(description=ID_RULE, json_schema_extra={
    "pattern": ID_PATTERN, "minLength": 1, "maxLength": ID_MAX_LENGTH})]
Label = Annotated[str, Field(max_length=200), AfterValidator(_text)]
Email = Annotated[str, Field(max_length=320), AfterValidator(_text)]
Note = Annotated[str, Field(max_length=2000), AfterValidator(_note)]
Instant = Annotated[datetime, AfterValidator(utc_instant), Field(description=DATE_RULE)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewUser(Strict):
    user_id: Id
    team_id: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role = Role.USER
    email: Email | None = None


class NewTeam(Strict):
    team_id: Id
    name: Label = Field(min_length=1)
    cost_center: Label | None = None


class BudgetBody(Strict):
    limit_usd: Money
    period: Period = Period.MONTH
    mode: Mode = Mode.HARD
    grace_percent: int = Field(default=10, ge=0, le=1000)
    grace_hours: int | None = Field(default=None, gt=0, le=24 * 366)


class GrantBody(Strict):
    """A whole grant: what is left out is unrestricted (every model, no default, no maximum)."""
    models: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=1000, description="model names, or ['*'] for every model")
    default_key_budget: BudgetBody | None = None
    max_key_budget_usd: Money | None = None


class NewKey(Strict):
    name: Label = Field(min_length=1)
    description: Note = ""
    models: list[str] = Field(min_length=1, max_length=200)
    budget_usd: Money | None = None
    budget_mode: Mode = Mode.HARD
    expires_at: Instant | None = None
    rpm_limit: int | None = Field(default=None, gt=0)
    tpm_limit: int | None = Field(default=None, gt=0)
    user_id: str | None = None


class RotateBody(Strict):
    grace_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)


class NewJob(Strict):
    job_type: Label = Field(min_length=1)
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)
    user_id: str | None = None


class JobDone(Strict):
    status: str = Field(pattern="^(completed|failed)$")
    error_message: Annotated[str, Field(max_length=4000), AfterValidator(_note)] | None = None
    metadata: dict[str, str | int | bool | None] = Field(default_factory=dict)
