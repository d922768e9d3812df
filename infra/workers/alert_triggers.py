"""From followed logs to triggers: budget events (the ledger's log) and anomalies (the anomalies
application's log) evaluated against the rules, each page recorded with its log position.

A budget is read from the ledger as it stood right after the page's last spend or budget change
(and right before each period rollover in the page, so a lagging worker still fires the old
period's rules), never from a running total of our own: a restarted worker needs no warm-up.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import Tracking

from domain.alerts.evaluate import AnomalyFacts, BudgetState, Firing, anomaly_firings, budget_firings
from domain.alerts.messages import Message, anomaly_message, budget_message
from domain.alerts.rule import AlertRule
from domain.alerts.trigger import AlertTrigger, Delivery
from domain.budget import Budget
from domain.money import usd_text
from domain.services.alerts import Alerts
from infra.workers.alert_recipients import Directory, email_addresses, user_ids
from infra.workers.budget_reader import BudgetReader, budget_state, evaluation_points

log = logging.getLogger(__name__)
BUDGET_TOPICS = ("meterline.SpendAccrued", "meterline.BudgetSet", "meterline.BudgetPeriodRolledOver")
ANOMALY_TOPIC = "meterline.AnomalyDetected"
ALERT_TYPE = "meterline.alert.triggered"
KNOWN_FIRED = 100_000  # trigger ids remembered as stored, so spend past a threshold reads nothing


class LogSource(Protocol):
    """An eventsourcing application whose notification log the worker follows."""

    name: str
    notification_log: Any
    mapper: Any
    repository: Any


class TriggerFollower:
    def __init__(self, alerts: Alerts, ledger: LogSource, directory: Directory,
                 anomalies: LogSource | None = None, admin_webhook_url: str | None = None,
                 page: int = 500) -> None:
        self.alerts, self.ledger, self.directory = alerts, ledger, directory
        self.anomalies, self.admin_webhook_url, self.page = anomalies, admin_webhook_url, page
        self.rules: dict[UUID, AlertRule] = {}
        self._rules_at = 0
        self.triggered = 0
        self.budgets = BudgetReader(ledger)
        self._fired: OrderedDict[UUID, None] = OrderedDict()

    def refresh_rules(self) -> None:
        changed, self._rules_at = self.alerts.rule_changes(self._rules_at)
        for rule_id in changed:
            rule = self.alerts.rule(rule_id)
            if rule is None:
                self.rules.pop(rule_id, None)
            else:
                self.rules[rule_id] = rule

    def follow_once(self) -> int:
        """Evaluates one page of each followed log; returns how many events were read."""
        self.refresh_rules()
        read = 0
        sources = [(self.ledger, BUDGET_TOPICS, self._budget_fired)]
        if self.anomalies is not None:
            sources.append((self.anomalies, (ANOMALY_TOPIC,), self._anomaly_fired))
        for source, topics, fire in sources:
            found = source.notification_log.select(start=self.alerts.position(source.name) + 1,
                                                   limit=self.page, topics=topics)
            if found:
                position = Tracking(source.name, found[-1].id)
                self.triggered += self.alerts.record_triggers(fire(found), position)
                read += len(found)
        return read

    # ----- budgets -------------------------------------------------------------------------

    def _budget_fired(self, notifications: Sequence[Any]) -> list[tuple[AlertTrigger, list[Delivery]]]:
        fired: dict[UUID, tuple[AlertTrigger, list[Delivery]]] = {}
        specs = [(i, r.spec) for i, r in self.rules.items()
                 if r.spec.enabled and r.spec.trigger.anomaly is None]
        if not specs:
            return []
        # Rules by the budget they name, so a budget is checked against its own and the global ones
        # only; without a global rule, only the budgets some rule names are worth reading.
        everywhere = [(i, s) for i, s in specs if s.scope == "global"]
        named: dict[UUID, list[tuple[UUID, Any]]] = {}
        for rule_id, spec in specs:
            if spec.scope != "global":
                named.setdefault(Budget.id_for(spec.scope, spec.scope_id or ""), []).append((rule_id, spec))
        for budget_id, version in evaluation_points(notifications):
            watching = everywhere + named.get(budget_id, [])
            if not watching:
                continue
            state = budget_state(self.budgets.at(budget_id, version))
            for firing in budget_firings(state, watching):
                rule = self.rules[firing.rule_id]
                message = budget_message(rule.spec.name, firing, state)
                self._add(fired, rule, firing, message, budget_data(firing, state))
        return list(fired.values())

    # ----- anomalies -----------------------------------------------------------------------

    def _anomaly_fired(self, notifications: Sequence[Any]) -> list[tuple[AlertTrigger, list[Delivery]]]:
        fired: dict[UUID, tuple[AlertTrigger, list[Delivery]]] = {}
        for notification in notifications:
            try:
                event = self.anomalies.mapper.to_domain_event(notification)
                anomaly = AnomalyFacts(str(event.incident_id), event.kind, event.scope, event.scope_id,
                                       event.user_id, dict(event.figures), event.at)
            except (AttributeError, TypeError, ValueError) as exc:
                # one event off the contract must not hold every later anomaly alert back
                log.error("alerts: anomaly event %d is not readable (%s); no alert for it",
                          notification.id, exc)
                continue
            specs = [(i, r.spec) for i, r in self.rules.items()]
            for firing in anomaly_firings(anomaly, specs):
                rule = self.rules[firing.rule_id]
                data = {"kind": anomaly.kind, "incident_id": anomaly.incident_id, "user_id": anomaly.user_id,
                        "figures": anomaly.figures, "detected_at": anomaly.at.isoformat()}
                self._add(fired, rule, firing, anomaly_message(rule.spec.name, anomaly), data)
        return list(fired.values())

    # ----- one trigger and its messages ----------------------------------------------------

    def _add(self, fired: dict[UUID, tuple[AlertTrigger, list[Delivery]]], rule: AlertRule, firing: Firing,
             message: Message, data: dict[str, Any]) -> None:
        trigger_id = AlertTrigger.id_for(firing.rule_id, firing.scope, firing.scope_id, firing.period_key)
        if trigger_id in fired or self._known(trigger_id):
            return  # fired already: spend past a threshold re-evaluates on every later page
        now = self.alerts.clock.now()
        data = {"trigger_id": str(trigger_id), "rule_id": str(rule.id), "rule_name": rule.spec.name,
                "reason": firing.reason, "scope": firing.scope, "scope_id": firing.scope_id,
                "at": now.isoformat(), **data}
        trigger = AlertTrigger(rule_id=rule.id, scope=firing.scope, scope_id=firing.scope_id,
                               period_key=firing.period_key, reason=firing.reason, subject=message.subject,
                               facts=data, at=now)
        body = {"type": ALERT_TYPE, "text": message.text, "data": data}
        deliveries = [Delivery(trigger_id=trigger.id, rule_id=rule.id, channel=channel, recipient=recipient,
                               subject=message.subject, body=body, at=now)
                      for channel, recipient in self._recipients(rule, firing)]
        fired[trigger_id] = (trigger, deliveries)

    def _known(self, trigger_id: UUID) -> bool:
        """Whether the trigger is stored (remembered once seen: stored triggers never go away)."""
        if trigger_id in self._fired:
            return True
        if trigger_id not in self.alerts.repository:
            return False
        self._fired[trigger_id] = None
        if len(self._fired) > KNOWN_FIRED:
            self._fired.popitem(last=False)
        return True

    def _recipients(self, rule: AlertRule, firing: Firing) -> list[tuple[str, str]]:
        spec = rule.spec
        found: list[tuple[str, str]] = []
        for channel in spec.channels:
            if channel == "email":
                found += [("email", a) for a in email_addresses(spec, firing.scope, firing.scope_id,
                                                                 self.directory)]
            elif channel == "in_app":
                found += [("in_app", u) for u in user_ids(spec, firing.scope, firing.scope_id,
                                                          self.directory)]
            elif url := (spec.webhook_url or self.admin_webhook_url):
                found.append(("webhook", url))
            else:
                log.warning("alert rule %r: webhook channel skipped: the rule has no webhook_url and "
                            "METERLINE_ALERTS_WEBHOOK_URL is not set", spec.name)
        return found


def budget_data(firing: Firing, state: BudgetState) -> dict[str, Any]:
    """The JSON facts of a budget alert (money as exact decimal strings)."""
    threshold = firing.facts["threshold"]
    return {"period": state.period, "period_start": state.period_start.isoformat(),
            "period_end": state.period_end.isoformat() if state.period_end else None,
            "spent_usd": usd_text(state.period_spent),
            "limit_usd": usd_text(state.limit) if state.limit is not None else None,
            "mode": state.mode,
            "threshold_percent": threshold if firing.reason == "budget_percent" else None,
            "threshold_usd": usd_text(threshold) if firing.reason == "spend" else None}
