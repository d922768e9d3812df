"""What an alert rule says, validated: who it watches, what fires it, whom it tells and how.

Recipients are e-mail addresses, user ids, or the placeholders `@owner` (whoever's spend it
is: the user, a key's user; for a team, the admins) and `@admins` (every admin user with an
e-mail address). Placeholders start with '@', which neither a user id nor an address can.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from domain.errors import DomainError
from domain.ids import ID_RULE, is_valid_id
from domain.money import MoneyError, to_nanos

SCOPES = ("user", "key", "team", "global")
CHANNELS = ("email", "webhook", "in_app")
ANOMALY_KINDS = ("spike", "night", "error_rate")
OWNER, ADMINS = "@owner", "@admins"
MAX_PERCENT = 1000
MAX_RECIPIENTS = 50
MAX_NAME = 200
MAX_URL = 2000
# rules a user may keep at /api/alerts: each is loaded whenever rules are listed or evaluated, so
# one user's script must not make that slow for everyone (admins' rules have no such cap)
MAX_OWN_RULES = 100
# what the SMTP channel sends to (adapters/notify/email_message.py), no more: dot-separated
# atoms of ASCII letters, digits and !#$%&'*+/=?^_`{|}~- before the @, host name labels after it
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*"
                    rf"@(?=.{{1,253}}\Z)(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")

_NOT_IN_A_LINE = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls (CR, LF, NUL), surrogates, U+2028/9


class AlertRuleError(DomainError):
    """A rule that cannot be kept as given; `field` names the part that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TooManyRules(DomainError):
    """A user who keeps MAX_OWN_RULES rules asked for another."""


@dataclass(frozen=True)
class Trigger:
    """Exactly one of: a percent of the budget's limit, an absolute spend, an anomaly kind."""

    budget_percent: int | None = None
    spend_nanos: int | None = None
    anomaly: str | None = None

    @property
    def kind(self) -> str:
        if self.budget_percent is not None:
            return "budget_percent"
        return "spend" if self.spend_nanos is not None else "anomaly"


@dataclass(frozen=True)
class RuleSpec:
    name: str
    scope: str
    scope_id: str | None
    trigger: Trigger
    channels: tuple[str, ...]
    recipients: tuple[str, ...]
    webhook_url: str | None = None
    enabled: bool = True

    def state(self) -> dict[str, Any]:
        """The spec as stored in events: plain JSON types."""
        t = self.trigger
        return {"name": self.name, "scope": self.scope, "scope_id": self.scope_id,
                "trigger": {"budget_percent": t.budget_percent, "spend_nanos": t.spend_nanos,
                            "anomaly": t.anomaly},
                "channels": list(self.channels), "recipients": list(self.recipients),
                "webhook_url": self.webhook_url, "enabled": self.enabled}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RuleSpec:
        return cls(state["name"], state["scope"], state["scope_id"], Trigger(**state["trigger"]),
                   tuple(state["channels"]), tuple(state["recipients"]), state["webhook_url"],
                   state["enabled"])

    def applies_to(self, scope: str, scope_id: str) -> bool:
        """Whether the rule watches this budget scope (a global rule watches every scope)."""
        return self.scope == "global" or (self.scope == scope and self.scope_id == scope_id)


def rule_spec(name: str, scope: str, scope_id: str | None, trigger: dict[str, Any],
              channels: list[str], recipients: list[str], webhook_url: str | None = None,
              enabled: bool = True) -> RuleSpec:
    """A validated RuleSpec; AlertRuleError names the first field that is wrong."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise AlertRuleError("name", f"'name' must be 1 to {MAX_NAME} characters")
    if any(unicodedata.category(c) in _NOT_IN_A_LINE for c in name):
        raise AlertRuleError("name", "'name' must be one line of text: no control characters or line "
                                     "and paragraph separators (it is a line of every alert message)")
    if scope not in SCOPES:
        raise AlertRuleError("scope", f"'scope' must be one of {', '.join(SCOPES)}; got {scope!r}")
    if scope == "global":
        if scope_id is not None:
            raise AlertRuleError("scope_id", "a global rule has no 'scope_id'; leave it out")
    elif scope_id is None or not is_valid_id(scope_id):
        raise AlertRuleError("scope_id", f"a {scope} rule needs 'scope_id': {ID_RULE}")
    if scope == "key" and scope_id is not None:
        scope_id = _key_id(scope_id)
    checked = _trigger(trigger)
    if checked.anomaly is not None and scope == "team":
        raise AlertRuleError("scope", "anomalies are found per user and per key: use scope user, "
                                      "key or global for an anomaly rule")
    if not channels or len(set(channels)) != len(channels) or not set(channels) <= set(CHANNELS):
        raise AlertRuleError("channels", f"'channels' must list distinct channels among "
                                         f"{', '.join(CHANNELS)}; got {channels!r}")
    if len(recipients) > MAX_RECIPIENTS or len(set(recipients)) != len(recipients):
        raise AlertRuleError("recipients", f"'recipients' must be at most {MAX_RECIPIENTS} distinct entries")
    for recipient in recipients:
        if not (recipient in (OWNER, ADMINS) or is_email(recipient) or is_valid_id(recipient)):
            raise AlertRuleError("recipients", f"recipient {recipient!r} is neither an e-mail address, "
                                               f"a user id, '{OWNER}' nor '{ADMINS}'")
    if set(channels) - {"webhook"} and not recipients:
        raise AlertRuleError("recipients", "e-mail and in-app channels need 'recipients' "
                                           f"(e.g. [\"{OWNER}\"])")
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    return RuleSpec(name, scope, scope_id, checked, tuple(channels), tuple(recipients), webhook_url,
                    bool(enabled))


def _trigger(trigger: dict[str, Any]) -> Trigger:
    given = {k: v for k, v in (trigger or {}).items() if v is not None}
    if len(given) != 1 or not set(given) <= {"budget_percent", "spend_usd", "anomaly"}:
        raise AlertRuleError("trigger", "'trigger' must hold exactly one of budget_percent (1 to "
                                        f"{MAX_PERCENT}), spend_usd (a decimal string) or anomaly "
                                        f"({', '.join(ANOMALY_KINDS)})")
    if "budget_percent" in given:
        percent = given["budget_percent"]
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= MAX_PERCENT:
            raise AlertRuleError("trigger.budget_percent",
                                 f"'budget_percent' must be a whole number from 1 to {MAX_PERCENT}")
        return Trigger(budget_percent=percent)
    if "spend_usd" in given:
        amount = given["spend_usd"]
        try:
            if not isinstance(amount, str):
                raise MoneyError("not a string")
            nanos = to_nanos(amount.strip())
        except MoneyError:
            raise AlertRuleError("trigger.spend_usd", "'spend_usd' must be a decimal string in USD "
                                 f"with at most 9 decimals, such as \"12.50\"; got {amount!r}") from None
        if nanos <= 0:
            raise AlertRuleError("trigger.spend_usd", "'spend_usd' must be more than 0")
        return Trigger(spend_nanos=nanos)
    if given["anomaly"] not in ANOMALY_KINDS:
        raise AlertRuleError("trigger.anomaly", f"'anomaly' must be one of {', '.join(ANOMALY_KINDS)}")
    return Trigger(anomaly=given["anomaly"])


def _key_id(scope_id: str) -> str:
    """A key id as budgets and anomalies name it: a UUID in its canonical form. An id written in
    capitals or without hyphens names the same key, but a rule keeping it so would never match."""
    try:
        return str(UUID(scope_id))
    except ValueError:
        return scope_id


def is_email(value: str) -> bool:
    return len(value) <= 320 and _EMAIL.fullmatch(value) is not None


def check_webhook_url(url: str) -> None:
    """An http(s) URL with a host, no credentials in it (they would be shown to everyone who
    reads the rule), at most MAX_URL characters."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = None
    if (parts is None or len(url) > MAX_URL or parts.scheme not in ("http", "https")
            or not parts.hostname or parts.username or parts.password
            or any(c.isspace() or ord(c) < 32 for c in url)):
        raise AlertRuleError("webhook_url", "'webhook_url' must be an http or https URL with a host "
                                            f"and no credentials, at most {MAX_URL} characters")
