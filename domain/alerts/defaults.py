"""The rules every deployment starts with (installed once, on first start; admins may change them).

Their ids are fixed, so installing them again (another process, a restart) finds them made.
"""

from __future__ import annotations

from uuid import UUID

from domain.alerts.rule_spec import ADMINS, OWNER, RuleSpec, rule_spec
from domain.ids import stable_id


def default_rules() -> list[tuple[UUID, RuleSpec]]:
    specs = [
        rule_spec("80% of budget: warning", "global", None, {"budget_percent": 80}, ["email"], [OWNER]),
        rule_spec("95% of budget: critical", "global", None, {"budget_percent": 95},
                  ["email", "in_app"], [OWNER]),
        # webhook without a URL: the deployment's admin webhook (METERLINE_ALERTS_WEBHOOK_URL)
        rule_spec("100% of budget: exceeded", "global", None, {"budget_percent": 100},
                  ["email", "in_app", "webhook"], [OWNER, ADMINS]),
        *(rule_spec(f"anomaly: {kind}", "global", None, {"anomaly": kind}, ["email"], [ADMINS])
          for kind in ("spike", "night", "error_rate")),
    ]
    return [(stable_id("alert-default-rule", spec.name), spec) for spec in specs]
