"""The words of an alert: a subject line and a plain-text message people can act on.

Money is exact decimal USD (domain.money.usd_text); the message says what happens next under
the budget's mode, because "80 % spent" means something else for a soft and a hard budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.alerts.evaluate import AnomalyFacts, BudgetState, Firing
from domain.money import percent_of, usd_text

ANOMALY_WORDS = {"spike": "a sudden spike in usage (a runaway script?)",
                 "night": "usage at night, outside this scope's usual hours (scheduled jobs or abuse?)",
                 "error_rate": "a high share of failed requests (an integration problem?)"}


@dataclass(frozen=True)
class Message:
    subject: str
    text: str


def budget_message(rule_name: str, firing: Firing, state: BudgetState) -> Message:
    who = f"{state.scope} {state.scope_id}"
    spent = f"${usd_text(state.period_spent)}"
    if firing.reason == "budget_percent":
        headline = f"{firing.facts['threshold']}% of the budget reached for {who}"
    else:
        headline = f"spend reached ${usd_text(firing.facts['threshold'])} for {who}"
    period = (f"{state.period} from {state.period_start.isoformat()}"
              + (f" to {state.period_end.isoformat()}" if state.period_end else ""))
    lines = [f"Alert rule: {rule_name}", f"Scope: {who}", f"Period: {period}",
             f"Spent this period: {spent}"]
    if state.limit is not None:
        lines.append(f"Budget: ${usd_text(state.limit)} ({state.mode})")
    lines.append(f"What happens next: {next_steps(state)}")
    return Message(f"[Meterline] {headline}", "\n".join(lines) + "\n")


def next_steps(state: BudgetState) -> str:
    if state.limit is None:
        return "no budget is set for this scope, so nothing is blocked."
    if state.mode == "soft":
        return "nothing is blocked: this is a soft budget, which only raises alerts."
    if state.mode == "hard":
        return (f"requests are refused (HTTP 429) once spend reaches the limit of "
                f"${usd_text(state.limit)}, until the period ends or the budget is raised.")
    cap = state.limit + percent_of(state.limit, state.grace_percent)
    window = f", or {state.grace_hours} h after the limit is passed" if state.grace_hours else ""
    return (f"past the limit a grace allowance of {state.grace_percent}% applies: requests are "
            f"refused (HTTP 429) once spend reaches ${usd_text(cap)}{window}.")


def anomaly_message(rule_name: str, anomaly: AnomalyFacts) -> Message:
    who = f"{anomaly.scope} {anomaly.scope_id}"
    figures = "\n".join(f"  {name}: {value}" for name, value in sorted(anomaly.figures.items()))
    text = (f"Alert rule: {rule_name}\nScope: {who}"
            + (f" (user {anomaly.user_id})" if anomaly.user_id and anomaly.scope != "user" else "")
            + f"\nDetected at: {anomaly.at.isoformat()}\nWhat was seen: "
            + ANOMALY_WORDS.get(anomaly.kind, anomaly.kind)
            + f"\nFigures:\n{figures}\nWhat happens next: nothing is blocked by an anomaly; "
            "look at the scope's usage (GET /api/admin/analytics) and revoke a key if it is abused.\n")
    return Message(f"[Meterline] anomaly: {anomaly.kind} for {who}", text)
