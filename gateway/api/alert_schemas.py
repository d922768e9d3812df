"""Bodies of the alerts API. Their shape is checked here (sizes, types, no unknown fields); what a
rule may say is `domain.alerts.rule_spec`'s, whose errors name the field."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictInt

from gateway.api.schemas import Label, Strict

Short = Annotated[str, Field(max_length=40)]
Recipient = Annotated[str, Field(min_length=1, max_length=320)]


class TriggerBody(Strict):
    budget_percent: StrictInt | None = Field(default=None, description="1 to 1000: percent of the limit")
    spend_usd: Short | None = Field(default=None, description="a decimal string, e.g. \"250.00\"")
    anomaly: Short | None = Field(default=None, description="spike, night or error_rate")


class AlertRuleBody(Strict):
    name: Label = Field(min_length=1)
    scope: Short = Field(description="user, key, team or global (users: user or key)")
    scope_id: Annotated[str, Field(max_length=128)] | None = None
    trigger: TriggerBody
    channels: list[Short] = Field(min_length=1, max_length=3, description="email, webhook, in_app")
    recipients: list[Recipient] = Field(default_factory=list, max_length=50, description=(
        "e-mail addresses, user ids, '@owner' (whoever's spend it is) or '@admins'"))
    webhook_url: Annotated[str, Field(max_length=2000)] | None = None
    enabled: StrictBool = True


class AlertRuleUpdate(AlertRuleBody):
    rotate_webhook_secret: StrictBool = Field(default=False, description=(
        "make a new webhook signing secret; it is in this response only"))
