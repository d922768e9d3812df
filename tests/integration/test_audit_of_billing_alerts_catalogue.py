"""The audit trail records month closes, alert rules, job terms and catalogue changes: what
happened and who asked, never a sealed file's bytes or a webhook URL that may hold a token."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from adapters.analytics.memory import InMemoryAnalytics
from domain.alerts.rule_spec import rule_spec
from domain.services.acting import acting_as
from domain.services.alerts import RULE_TOPICS, Alerts
from domain.services.audit_of_events import BILLING_TOPICS
from domain.services.billing import Billing
from infra.workers.audit_recorder import AuditRecorder
from reports.closing import close_month
from tests.integration.test_audit_recorder import KEY, entries, open_trail
from tests.support.stores import OpenStore, seed_registry
from tests.support.stores import clock as clock  # fixtures, used by name
from tests.support.stores import open_store as open_store

HOOK = "https://hooks.example.com/services/T000/B000/very-secret-token"


def test_closes_rules_and_catalogue_changes_reach_the_trail_without_bytes_or_tokens(
        open_store: OpenStore, store_env, clock) -> None:
    registry, ledger = open_store()
    opened: list = []
    trail = open_trail(store_env, clock, opened)
    billing, alerts = Billing.beside(ledger, clock), Alerts.beside(ledger, clock)
    try:
        seed_registry(registry)
        with acting_as("admin:mlk_admin_1234"):
            registry.change_model("qwen-2-7b", enabled=False,
                                  route={"upstream_url": "http://10.0.0.9:8000/v1", "upstream_model": "q"})
            alerts.create_rule(rule_spec("team at 50 %", "team", "t1", {"budget_percent": 50}, ["webhook"],
                                         ["@admins"], HOOK))
        clock.set(datetime(2026, 4, 2, tzinfo=UTC))
        close_month(InMemoryAnalytics(), billing, "2026-03", "UTC", clock.now(), "admin:mlk_admin_1234")
        recorder = AuditRecorder(trail, registry, ledger)
        recorder.sources += [(alerts, tuple(RULE_TOPICS)), (billing, BILLING_TOPICS)]
        recorder.record_all()
        recorded = {(e.entry.action, e.entry.target): e.entry for e in entries(trail)}
        route = recorded[("ModelRouteSet", "model:qwen-2-7b")]
        assert route.details["route.upstream_url"] == "http://10.0.0.9:8000/v1"
        assert route.actor.startswith("admin:") and "ModelDisabled" in {a for a, _ in recorded}
        rule = next(e for (a, _), e in recorded.items() if a == "AlertRuleCreated")
        assert rule.details["spec.trigger.budget_percent"] == 50 and "spec.webhook_url" not in rule.details
        closed = recorded[("PeriodClosed", "period:2026-03")]
        assert closed.details["month"] == "2026-03" and closed.details["manifest.requests"] == 0
        sealed = [e.entry for e in entries(trail) if e.entry.action == "ExportSealed"]
        assert len(sealed) == 42 and all(set(e.details) == {"month", "name", "sha256"} for e in sealed)
        text = "\n".join(json.dumps(e.as_record()) for e in entries(trail))
        assert "very-secret-token" not in text and "content" not in text
        assert trail.verify(KEY.public_key()).ok
    finally:
        for app in (billing, alerts, *opened):
            app.close()
